//! The whole answer path over the example cluster: any input gets either no reply or a reply
//! that fits the transport's limit and starts with the query's id.
#![no_main]

use std::sync::OnceLock;

use hollow_dns::snapshot::{Disposition, Transport};
use hollow_dns::{PodMode, Snapshot, SnapshotSettings, example, wire};
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let mut settings = SnapshotSettings::default();
        settings.records.pod_mode = PodMode::Insecure;
        Snapshot::build(&example::cluster(), &settings)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; wire::MAX_MESSAGE_LEN];
    for transport in [Transport::Udp, Transport::Tcp] {
        let (disposition, _) = snapshot().respond(data, &mut out, transport, data.len(), false);
        if let Disposition::Reply { len, .. } | Disposition::ChaseExternal { len, .. } = disposition {
            assert!(len >= wire::HEADER_LEN);
            assert_eq!(out[..2], data[..2]);
            if transport == Transport::Udp {
                assert!(len <= 4096);
            }
        }
    }
});
