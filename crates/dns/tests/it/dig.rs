//! Runs the real `dig` (bind9-dnsutils) against a server and reads its output.

use std::net::SocketAddr;

/// One record line of dig's output: owner, TTL, type and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub owner: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// What dig printed, split into header fields and sections.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<Line>,
    pub authority: Vec<Line>,
    pub additional: Vec<Line>,
    pub raw: String,
}

impl Answer {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|present| present == flag)
    }

    /// Sorted data of the answer records of `rtype`.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        let mut data: Vec<String> = self
            .answer
            .iter()
            .filter(|line| line.rtype == rtype)
            .map(|line| line.data.to_ascii_lowercase())
            .collect();
        data.sort();
        data
    }

    pub fn assert_status(&self, status: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; dig said:\n{}",
            self.raw
        );
        self
    }

    /// NXDOMAIN or NODATA: no answers and the zone SOA in authority.
    pub fn assert_negative(&self, status: &str) {
        self.assert_status(status);
        assert!(self.answer.is_empty(), "expected no answers:\n{}", self.raw);
        assert_eq!(self.authority.len(), 1, "expected the SOA:\n{}", self.raw);
        assert_eq!(self.authority[0].rtype, "SOA", "{}", self.raw);
        assert!(
            self.has_flag("aa"),
            "negative answers are authoritative:\n{}",
            self.raw
        );
    }
}

/// Queries `server` with dig. `options` are extra dig options such as `+tcp`. A missing dig
/// fails the test: it is a declared requirement (`apt-get install bind9-dnsutils`).
pub async fn dig(server: SocketAddr, name: &str, rtype: &str, options: &[&str]) -> Answer {
    let mut command = tokio::process::Command::new("dig");
    command
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+tries=1", "+time=3", "+nocookie", "+noall", "+comments"])
        .args(["+answer", "+authority", "+additional"])
        .args(options);
    if rtype == "PTR-X" {
        command.arg("-x").arg(name);
    } else {
        command.arg(name).arg(rtype);
    }
    let output = match command.output().await {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run `dig` ({error}); these tests need it: apt-get install -y bind9-dnsutils"
        ),
    };
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "dig failed ({}): {raw}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(raw)
}

fn parse(raw: String) -> Answer {
    let mut answer = Answer::default();
    let mut section = "";
    for line in raw.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            if let Some(status) = rest.split("status: ").nth(1) {
                answer.status = status.split(',').next().unwrap_or_default().to_owned();
            }
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            let flags = rest.split(';').next().unwrap_or_default();
            answer.flags = flags.split_whitespace().map(str::to_owned).collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
        } else if line.is_empty() || line.starts_with(';') {
            continue;
        } else {
            let mut fields = line.split_whitespace();
            let owner = fields.next().unwrap_or_default().to_owned();
            let ttl = fields.next().and_then(|ttl| ttl.parse().ok()).unwrap_or(0);
            let _class = fields.next();
            let rtype = fields.next().unwrap_or_default().to_owned();
            let data = fields.collect::<Vec<_>>().join(" ");
            let record = Line {
                owner,
                ttl,
                rtype,
                data,
            };
            match section {
                "answer" => answer.answer.push(record),
                "authority" => answer.authority.push(record),
                "additional" => answer.additional.push(record),
                _ => {}
            }
        }
    }
    answer.raw = raw;
    answer
}
