//! `$(VAR)` references in env values, commands and args, expanded the way Kubernetes does.
//!
//! `$(NAME)` becomes the variable's value when it is defined and stays as written when it is
//! not; `$$` is an escaped `$`; any other `$` (including an unclosed `$(`) is kept literally.

/// Expands `$(NAME)` references in `input` using `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut output = String::with_capacity(input.len());
    // Start of the literal run not yet copied to `output`.
    let mut literal_start = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] != b'$' || cursor + 1 >= bytes.len() {
            cursor += 1;
            continue;
        }
        output.push_str(&input[literal_start..cursor]);
        match bytes[cursor + 1] {
            b'$' => {
                output.push('$');
                cursor += 2;
            }
            b'(' => match input[cursor + 2..].find(')') {
                Some(length) => {
                    let name = &input[cursor + 2..cursor + 2 + length];
                    match lookup(name) {
                        Some(value) => output.push_str(&value),
                        None => {
                            output.push_str("$(");
                            output.push_str(name);
                            output.push(')');
                        }
                    }
                    cursor += 2 + length + 1;
                }
                None => {
                    // An unclosed reference is literal text; keep scanning after the `$(`
                    // so a later `$$` or `$(X)` is still handled.
                    output.push_str("$(");
                    cursor += 2;
                }
            },
            _ => {
                output.push('$');
                cursor += 1;
            }
        }
        literal_start = cursor;
    }
    output.push_str(&input[literal_start..]);
    output
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "POD_IP" => Some("127.244.0.2".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("$(POD_IP)".into()),
            _ => None,
        }
    }

    #[test]
    fn defined_variables_are_replaced() {
        assert_eq!(
            expand("--bind $(POD_IP) 8080", lookup),
            "--bind 127.244.0.2 8080"
        );
        assert_eq!(
            expand("$(POD_IP)$(POD_IP)", lookup),
            "127.244.0.2127.244.0.2"
        );
        assert_eq!(expand("a$(EMPTY)b", lookup), "ab");
    }

    #[test]
    fn unknown_variables_stay_literal() {
        assert_eq!(expand("$(NOPE) x", lookup), "$(NOPE) x");
        assert_eq!(expand("$()", lookup), "$()");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("$$(POD_IP)", lookup), "$(POD_IP)");
        assert_eq!(expand("$$$(POD_IP)", lookup), "$127.244.0.2");
        assert_eq!(expand("cost: $$5", lookup), "cost: $5");
    }

    #[test]
    fn lone_and_unclosed_dollars_are_literal() {
        assert_eq!(expand("$", lookup), "$");
        assert_eq!(expand("a$", lookup), "a$");
        assert_eq!(expand("$x $HOME", lookup), "$x $HOME");
        assert_eq!(expand("$(POD_IP", lookup), "$(POD_IP");
        // The first `)` closes the reference, so the name is ` $(POD_IP`, which is unknown.
        assert_eq!(expand("$( $(POD_IP)", lookup), "$( $(POD_IP)");
    }

    #[test]
    fn values_are_not_expanded_twice() {
        assert_eq!(expand("$(DOLLAR)", lookup), "$(POD_IP)");
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(expand("é$(POD_IP)ü$", lookup), "é127.244.0.2ü$");
    }
}
