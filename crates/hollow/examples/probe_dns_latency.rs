//! Measures how long a readiness change takes to reach DNS: from the instant a pod's exec
//! readiness probe observes a new outcome to the first answer of the cluster DNS server that
//! reflects it. Driven by `scripts/bench-probe-dns.sh`, which starts `hollow up` and a headless
//! service over pods whose probe is
//!
//! ```text
//! [ ! -e down ]   (and, when the outcome differs from its last run, append "<0|1> <date +%s.%N>"
//!                  to probe.log in the pod's working directory)
//! ```
//!
//! This program flips pods by creating and removing their `down` file, polls the DNS server
//! over UDP in a tight loop, and pairs each flip's first matching answer with the probe's
//! logged observation instant. Both instants are wall-clock times on this machine, so their
//! difference is the delay "beyond the probe period": probe result → agent → status write →
//! API server → EndpointSlice controller → DNS server.
//!
//! To tell those stages apart it also runs two `kubectl get --watch-only` processes, on the
//! pods and on the service's EndpointSlice, and notes when each shows a flip. Those instants
//! include kubectl's own decoding and printing, so the split is approximate. The DNS poller
//! queries once a millisecond, so it does not take a core from the server it measures.
//!
//! Usage: `probe_dns_latency <dns ip:port> <name> <pods json> <pods dir> [flips] [concurrent]`
//! where `<pods json>` is `kubectl get pods -o json` of the service's pods and `<pods dir>`
//! is the agent's `<data dir>/pods`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// A flip not reflected in DNS by then counts as lost.
const FLIP_DEADLINE: Duration = Duration::from_secs(20);
/// The whole run ends by then, whatever happened.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

struct BenchPod {
    name: String,
    address: Ipv4Addr,
    work_dir: PathBuf,
}

/// A flip waiting for DNS to reflect it.
struct Pending {
    ready: bool,
    flipped_at: f64,
    /// When a watch showed the pod's Ready condition flip.
    pod_seen_at: Option<f64>,
    /// When a watch showed the endpoint's readiness flip in the EndpointSlice.
    slice_seen_at: Option<f64>,
}

/// A flip that DNS reflected at `answered_at`.
struct Answered {
    pod: usize,
    ready: bool,
    flipped_at: f64,
    answered_at: f64,
    pod_seen_at: Option<f64>,
    slice_seen_at: Option<f64>,
}

fn wall_clock() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

fn main() -> Result<()> {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.len() < 5 {
        bail!(
            "usage: {} <dns ip:port> <name> <pods json> <pods dir> [flips] [concurrent]",
            arguments[0]
        );
    }
    let dns: SocketAddr = arguments[1].parse().context("the DNS address")?;
    let name = arguments[2].clone();
    let pods_json = std::fs::read(&arguments[3]).context("reading the pods JSON")?;
    let pods_dir = PathBuf::from(&arguments[4]);
    let flips: usize = arguments.get(5).map_or(Ok(120), |text| text.parse())?;
    let concurrent: usize = arguments.get(6).map_or(Ok(4), |text| text.parse())?;

    let pods = bench_pods(&pods_json, &pods_dir)?;
    println!(
        "{} pods behind {name}; {flips} flips, at most {concurrent} at once",
        pods.len()
    );
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(dns)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;

    // Every pod starts ready: wait until DNS answers with all of them.
    let everyone: HashSet<Ipv4Addr> = pods.iter().map(|pod| pod.address).collect();
    let started = Instant::now();
    loop {
        let answer = query(&socket, &name).unwrap_or_default();
        if answer == everyone {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "DNS never answered with all {} pods (last answer: {answer:?})",
                pods.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let pending: Arc<Mutex<HashMap<usize, Pending>>> = Arc::default();
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut watches = vec![
        watch(
            &["get", "pods", "-l", "app=bench"],
            pods.iter().map(|pod| pod.address).collect(),
            pending.clone(),
            pod_readiness,
            |flip, at| {
                flip.pod_seen_at.get_or_insert(at);
            },
        )?,
        watch(
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=bench",
            ],
            pods.iter().map(|pod| pod.address).collect(),
            pending.clone(),
            slice_readiness,
            |flip, at| {
                flip.slice_seen_at.get_or_insert(at);
            },
        )?,
    ];
    let poller = {
        let pending = pending.clone();
        let answered = answered.clone();
        let stop = stop.clone();
        let addresses: Vec<Ipv4Addr> = pods.iter().map(|pod| pod.address).collect();
        let name = name.clone();
        std::thread::spawn(move || -> Result<u64> {
            let mut queries = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(answer) = query(&socket, &name) else {
                    continue;
                };
                let answered_at = wall_clock();
                queries += 1;
                let mut pending = pending.lock().expect("pending flips");
                let reflected: Vec<usize> = pending
                    .iter()
                    .filter(|(pod, flip)| answer.contains(&addresses[**pod]) == flip.ready)
                    .map(|(pod, _)| *pod)
                    .collect();
                for pod in reflected {
                    let flip = pending.remove(&pod).expect("listed above");
                    answered.lock().expect("answered flips").push(Answered {
                        pod,
                        ready: flip.ready,
                        flipped_at: flip.flipped_at,
                        answered_at,
                        pod_seen_at: flip.pod_seen_at,
                        slice_seen_at: flip.slice_seen_at,
                    });
                }
                drop(pending);
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(queries)
        })
    };

    // Flip pods at uneven intervals, so observations fall anywhere in a probe period.
    let mut ready = vec![true; pods.len()];
    let mut next_pod = 0usize;
    let mut done = 0usize;
    let mut lost = 0usize;
    let mut jitter = Jitter::new(0x5eed_1234_abcd_ef01);
    let run_started = Instant::now();
    while done < flips && run_started.elapsed() < RUN_DEADLINE {
        {
            let mut pending = pending.lock().expect("pending flips");
            let now = wall_clock();
            let expired: Vec<usize> = pending
                .iter()
                .filter(|(_, flip)| now - flip.flipped_at > FLIP_DEADLINE.as_secs_f64())
                .map(|(pod, _)| *pod)
                .collect();
            for pod in expired {
                let flip = pending.remove(&pod).expect("listed above");
                eprintln!(
                    "lost: {} never became {} in DNS",
                    pods[pod].name,
                    if flip.ready { "present" } else { "absent" }
                );
                lost += 1;
                done += 1;
            }
            if pending.len() < concurrent {
                // The next pod that has no flip in flight.
                let candidate = (0..pods.len())
                    .map(|offset| (next_pod + offset) % pods.len())
                    .find(|pod| !pending.contains_key(pod));
                if let Some(pod) = candidate {
                    next_pod = pod + 1;
                    ready[pod] = !ready[pod];
                    // Taken before the change, so the probe cannot see it earlier.
                    let flipped_at = wall_clock();
                    let down = pods[pod].work_dir.join("down");
                    if ready[pod] {
                        std::fs::remove_file(&down)
                            .with_context(|| format!("removing {}", down.display()))?;
                    } else {
                        std::fs::write(&down, b"")
                            .with_context(|| format!("creating {}", down.display()))?;
                    }
                    pending.insert(
                        pod,
                        Pending {
                            ready: ready[pod],
                            flipped_at,
                            pod_seen_at: None,
                            slice_seen_at: None,
                        },
                    );
                    done += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50 + jitter.below(250)));
    }
    // Let the last flips arrive.
    let drain_started = Instant::now();
    while !pending.lock().expect("pending flips").is_empty()
        && drain_started.elapsed() < FLIP_DEADLINE
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    lost += pending.lock().expect("pending flips").len();
    stop.store(true, Ordering::Relaxed);
    let queries = poller.join().expect("the DNS poller")?;
    for child in &mut watches {
        let _ = child.kill();
        let _ = child.wait();
    }
    let answered = std::mem::take(&mut *answered.lock().expect("answered flips"));

    // Pair each answered flip with the probe's observation of it.
    let observations: Vec<Vec<(bool, f64)>> = pods
        .iter()
        .map(|pod| probe_log(&pod.work_dir))
        .collect::<Result<_>>()?;
    let mut beyond_probe = Vec::new();
    let mut probe_wait = Vec::new();
    let mut total = Vec::new();
    let mut to_pod = Vec::new();
    let mut pod_to_slice = Vec::new();
    let mut slice_to_dns = Vec::new();
    let mut unmatched = 0usize;
    for flip in &answered {
        let observed = observations[flip.pod]
            .iter()
            .find(|(ready, at)| *ready == flip.ready && *at >= flip.flipped_at);
        match observed {
            Some((_, observed_at)) if *observed_at <= flip.answered_at => {
                beyond_probe.push(flip.answered_at - observed_at);
                probe_wait.push(observed_at - flip.flipped_at);
                total.push(flip.answered_at - flip.flipped_at);
                if let (Some(pod_seen), Some(slice_seen)) = (flip.pod_seen_at, flip.slice_seen_at) {
                    to_pod.push(pod_seen - observed_at);
                    pod_to_slice.push(slice_seen - pod_seen);
                    slice_to_dns.push(flip.answered_at - slice_seen);
                }
            }
            _ => {
                eprintln!(
                    "unmatched: {} became {} in DNS at {:.6} with no earlier probe observation",
                    pods[flip.pod].name,
                    if flip.ready { "ready" } else { "not ready" },
                    flip.answered_at
                );
                unmatched += 1;
            }
        }
    }
    println!(
        "{} flips measured ({lost} lost, {unmatched} unmatched), {queries} DNS queries ({:.0}/s)",
        beyond_probe.len(),
        queries as f64 / run_started.elapsed().as_secs_f64()
    );
    report(
        "probe observation -> DNS answer (the delay beyond the probe period)",
        &mut beyond_probe,
    );
    report(
        "file flipped -> probe observation (waiting for the probe period)",
        &mut probe_wait,
    );
    report("file flipped -> DNS answer", &mut total);
    println!("stages, as seen by kubectl watches (approximate: they include kubectl's own lag):");
    report(
        "  probe observation -> pod Ready flip (agent, status write, API server)",
        &mut to_pod,
    );
    report(
        "  pod Ready flip -> EndpointSlice flip (EndpointSlice controller)",
        &mut pod_to_slice,
    );
    report(
        "  EndpointSlice flip -> DNS answer (DNS server)",
        &mut slice_to_dns,
    );
    if beyond_probe.is_empty() {
        bail!("no flip was measured");
    }
    Ok(())
}

fn report(title: &str, samples: &mut [f64]) {
    if samples.is_empty() {
        println!("{title}: no samples");
        return;
    }
    samples.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len());
        samples[index - 1] * 1000.0
    };
    println!(
        "{title}:\n  n={}  p50={:.1} ms  p90={:.1} ms  p99={:.1} ms  max={:.1} ms",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1] * 1000.0
    );
}

/// What one watched object says about readiness: the addresses it speaks for (`None`: all),
/// and those of them that are ready.
struct Readiness {
    mentioned: Option<HashSet<Ipv4Addr>>,
    ready: HashSet<Ipv4Addr>,
}

/// A pod speaks for its own address.
fn pod_readiness(pod: &serde_json::Value) -> Readiness {
    let address = pod["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok());
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
    Readiness {
        mentioned: Some(address.into_iter().collect()),
        ready: address.filter(|_| ready).into_iter().collect(),
    }
}

/// The benchmark's one EndpointSlice speaks for every address: one it lacks is not ready.
fn slice_readiness(slice: &serde_json::Value) -> Readiness {
    let mut ready = HashSet::new();
    for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
        let is_ready = endpoint["conditions"]["ready"] != false;
        for address in endpoint["addresses"].as_array().into_iter().flatten() {
            if let Some(address) = address.as_str().and_then(|text| text.parse().ok())
                && is_ready
            {
                ready.insert(address);
            }
        }
    }
    Readiness {
        mentioned: None,
        ready,
    }
}

/// Runs `kubectl <arguments> --watch-only -o json` and, for each pending flip that an object
/// shows in its new state, calls `seen` with the instant the object arrived.
fn watch(
    arguments: &[&str],
    addresses: Vec<Ipv4Addr>,
    pending: Arc<Mutex<HashMap<usize, Pending>>>,
    readiness: fn(&serde_json::Value) -> Readiness,
    seen: fn(&mut Pending, f64),
) -> Result<std::process::Child> {
    let mut child = std::process::Command::new("kubectl")
        .args(arguments)
        .args(["--watch-only", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("running kubectl")?;
    let output = child.stdout.take().context("kubectl's output")?;
    std::thread::spawn(move || {
        let objects = serde_json::Deserializer::from_reader(std::io::BufReader::new(output))
            .into_iter::<serde_json::Value>();
        for object in objects {
            let at = wall_clock();
            let Ok(object) = object else { return };
            let Readiness { mentioned, ready } = readiness(&object);
            let mut pending = pending.lock().expect("pending flips");
            for (pod, flip) in pending.iter_mut() {
                let address = addresses[*pod];
                let about_it = mentioned
                    .as_ref()
                    .is_none_or(|mentioned| mentioned.contains(&address));
                if about_it && ready.contains(&address) == flip.ready {
                    seen(flip, at);
                }
            }
        }
    });
    Ok(child)
}

/// The service's pods with their addresses and working directories.
fn bench_pods(json: &[u8], pods_dir: &std::path::Path) -> Result<Vec<BenchPod>> {
    let list: serde_json::Value = serde_json::from_slice(json).context("parsing the pods")?;
    let mut pods = BTreeMap::new();
    for item in list["items"].as_array().context("a pod list")? {
        let text = |path: &[&str]| {
            path.iter()
                .fold(item, |value, key| &value[*key])
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("pod field {}", path.join(".")))
        };
        let namespace = text(&["metadata", "namespace"])?;
        let name = text(&["metadata", "name"])?;
        let uid = text(&["metadata", "uid"])?;
        let address = text(&["status", "podIP"])?
            .parse()
            .with_context(|| format!("the address of {name}"))?;
        let work_dir = pods_dir
            .join(format!("{namespace}_{name}_{uid}"))
            .join("work");
        if !work_dir.is_dir() {
            bail!("{} is not a directory", work_dir.display());
        }
        pods.insert(
            name.clone(),
            BenchPod {
                name,
                address,
                work_dir,
            },
        );
    }
    if pods.is_empty() {
        bail!("no pods");
    }
    Ok(pods.into_values().collect())
}

/// The probe's log: each change of outcome it observed, with the instant.
fn probe_log(work_dir: &std::path::Path) -> Result<Vec<(bool, f64)>> {
    let path = work_dir.join("probe.log");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|line| {
            let (state, at) = line
                .split_once(' ')
                .with_context(|| format!("{}: bad line {line:?}", path.display()))?;
            Ok((state == "1", at.trim().parse()?))
        })
        .collect()
}

/// One A query; the set of addresses in the answer.
fn query(socket: &UdpSocket, name: &str) -> Result<HashSet<Ipv4Addr>> {
    static NEXT_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    // Standard query, recursion desired, one question.
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        packet.push(u8::try_from(label.len()).context("label too long")?);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send(&packet)?;
    let mut buffer = [0u8; 4096];
    loop {
        let length = socket.recv(&mut buffer)?;
        let reply = &buffer[..length];
        if length < 12 || reply[..2] != id.to_be_bytes() {
            // A late answer to an earlier query.
            continue;
        }
        return parse_addresses(reply);
    }
}

fn parse_addresses(reply: &[u8]) -> Result<HashSet<Ipv4Addr>> {
    let field = |at: usize| -> Result<u16> {
        Ok(u16::from_be_bytes(
            reply.get(at..at + 2).context("short reply")?.try_into()?,
        ))
    };
    if reply[2] & 0x02 != 0 {
        bail!("truncated reply");
    }
    let questions = field(4)?;
    let answers = field(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(reply, at)? + 4;
    }
    let mut addresses = HashSet::new();
    for _ in 0..answers {
        at = skip_name(reply, at)?;
        let kind = field(at)?;
        let length = field(at + 8)? as usize;
        let data = reply
            .get(at + 10..at + 10 + length)
            .context("short record")?;
        if kind == 1 && length == 4 {
            addresses.insert(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    Ok(addresses)
}

fn skip_name(reply: &[u8], mut at: usize) -> Result<usize> {
    loop {
        let length = *reply.get(at).context("short name")?;
        if length & 0xc0 == 0xc0 {
            return Ok(at + 2);
        }
        at += 1 + length as usize;
        if length == 0 {
            return Ok(at);
        }
    }
}

/// A small deterministic generator for flip intervals (xorshift).
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
