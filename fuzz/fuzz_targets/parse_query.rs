//! The query parser must accept or reject any input without panicking, and whatever it
//! accepts must have a consistent name (labels that add up to the name's length).
#![no_main]

use hollow_dns::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(question) = wire::parse_query(data) {
        let name = question.name_lower();
        assert!(name.len() <= wire::MAX_NAME_LEN);
        assert_eq!(name.last(), Some(&0));
        let labels: usize = (0..question.label_count())
            .map(|index| question.label(index).len() + 1)
            .sum();
        assert_eq!(labels + 1, name.len());
        assert!(name.eq_ignore_ascii_case(question.name_spelled()));
    }
});
