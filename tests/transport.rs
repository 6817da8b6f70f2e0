//! Connections: TLS with h2 by ALPN, h2c with prior knowledge, request-head limits, and
//! graceful shutdown that lets an in-flight segment finish.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

/// A throwaway CA and a certificate for 127.0.0.1/localhost, made at test time.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
    }
}

/// Length of the segment kept in a file of its own (over the 64 KiB default).
const BIG: usize = 300_000;

async fn origin() -> Origin {
    let mut objects = HashMap::new();
    objects.insert(
        "/vod/a/index.m3u8".to_owned(),
        playlist("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\ns1.ts\n#EXT-X-ENDLIST\n"),
    );
    objects.insert("/vod/a/s1.ts".to_owned(), segment(50_000));
    objects.insert("/vod/a/big.ts".to_owned(), segment(BIG));
    let slow = Object {
        delay: Some(Duration::from_millis(1500)),
        ..segment(200_000)
    };
    objects.insert("/vod/a/slow.ts".to_owned(), slow);
    spawn_origin(objects).await
}

/// GET `url` with `client`, read whole.
async fn fetch<C>(client: &Client<C, Empty<Bytes>>, url: &str) -> Reply
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let request = Request::get(url).body(Empty::new()).unwrap();
    read(client.request(request).await.expect("request goes through")).await
}

/// usher with an HTTPS listener on the certificate of `pki`, and its `https://` base URL.
fn tls_usher(origin: &Origin, pki: &Pki) -> (Usher, String) {
    // The shield off: this checks what a request passed through tells the origin about the
    // client (the shield's shared fetches name no client).
    tls_usher_with(
        origin,
        pki,
        "[access]\nprotected = [\"/vod/\"]\n[shield]\nenabled = false\n",
    )
}

/// usher with an HTTPS listener as [`tls_usher`], `extra` appended to its config.
fn tls_usher_with(origin: &Origin, pki: &Pki, extra: &str) -> (Usher, String) {
    let cert = pki.dir.path().join("cert.pem");
    let key = pki.dir.path().join("key.pem");
    let config = test_config(&origin.url(), extra).replace(
        "[listen]\n",
        &format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let usher = Usher::start(&config, &[]);
    let https = usher
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("listening on "))
        .expect("an https listening line")
        .to_owned();
    assert!(https.starts_with("https://127.0.0.1:"), "{https}");
    (usher, https)
}

/// A client config that trusts only the CA of `pki`.
fn client_tls(pki: &Pki) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn https_negotiates_h2_and_serves_the_same_answers() {
    let origin = origin().await;
    let pki = pki();
    let (_usher, https) = tls_usher(&origin, &pki);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_tls(&pki))
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);

    let ticket = mint("/vod/a/");
    let url = format!("{https}/vod/a/index.m3u8?ticket={ticket}");
    let reply = fetch(&client, &url).await;
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.status, 200);
    let line = reply
        .text()
        .lines()
        .find(|l| l.starts_with("s1.ts"))
        .unwrap()
        .to_owned();
    let seg = fetch(&client, &format!("{https}/vod/a/{line}")).await;
    assert_eq!(
        (seg.version, seg.status.as_u16(), seg.body.len()),
        (Version::HTTP_2, 200, 50_000)
    );
    let refused = fetch(&client, &format!("{https}/vod/a/s1.ts")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        origin.seen().last().unwrap().headers["x-forwarded-proto"],
        "https"
    );
}

/// A player that opens a new connection for its next segment resumes its TLS session
/// instead of paying for a full handshake again.
#[tokio::test]
async fn a_returning_client_resumes_its_tls_session() {
    use rustls::HandshakeKind;

    let origin = origin().await;
    let pki = pki();
    let (_usher, https) = tls_usher(&origin, &pki);
    let addr = https.trim_start_matches("https://").trim_end_matches('/');
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(&pki)));
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        kinds.push(tls.get_ref().1.handshake_kind());
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // Reading the answer also takes in the session tickets sent after the handshake.
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );
}

/// The unnamed files of `usher`'s bodies kept for `sendfile`: its open descriptors that
/// point to deleted files.
fn unnamed_files(usher: &Usher) -> Vec<String> {
    usher
        .open_file_targets()
        .into_iter()
        .filter(|target| target.ends_with(" (deleted)"))
        .collect()
}

/// `usher` once it answered `path` (the big segment) twice, the origin's bytes each time:
/// a miss, then the kept copy.
async fn serving_twice(usher: Usher, path: &str) -> Usher {
    for _ in 0..2 {
        let reply = get(&format!("{}{path}", usher.url), &[]).await;
        assert!(reply.body == segment(BIG).body, "the origin's bytes");
    }
    usher
}

/// A segment the shield keeps in a file of its own goes out byte for byte over HTTP/1.1
/// (from the file, by `sendfile`) and over h2c and TLS (copied from its mapping). The file
/// is unnamed, in the data directory by default and in memory with `sendfile_dir = ""`;
/// below `shield.sendfile_min_bytes`, or with it 0, bodies stay on the heap.
#[tokio::test]
async fn a_segment_kept_in_a_file_goes_out_whole_on_every_transport() {
    let origin = origin().await;
    let want = segment(BIG).body;
    let pki = pki();
    let (usher, https) = tls_usher_with(&origin, &pki, "");
    let ticket = mint("/vod/a/");
    let path = format!("/vod/a/big.ts?ticket={ticket}");
    let h2c = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let tls = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(&pki))
            .https_only()
            .enable_http2()
            .build(),
    );
    let sent_before = metric(&usher, "usher_sendfile_bytes_total").await;
    for (round, cache) in ["miss", "hit"].into_iter().enumerate() {
        let replies = [
            get(&format!("{}{path}", usher.url), &[]).await,
            fetch(&h2c, &format!("{}{path}", usher.url)).await,
            fetch(&tls, &format!("{https}{path}")).await,
        ];
        for (reply, version) in
            replies
                .iter()
                .zip([Version::HTTP_11, Version::HTTP_2, Version::HTTP_2])
        {
            assert_eq!((reply.status.as_u16(), reply.version), (200, version));
            let outcome = reply.headers["x-usher-cache"].to_str().unwrap();
            assert!(round == 0 || outcome == cache, "{outcome} in round {round}");
            assert!(
                reply.body == want,
                "{version:?} round {round}: the origin's bytes"
            );
        }
    }
    assert_eq!(origin.seen().len(), 1, "one fetch, then the kept copy");
    assert_eq!(metric(&usher, "usher_cache_mapped_bodies").await, 1.0);
    let data_dir = usher.config_path().with_file_name("data");
    let files = unnamed_files(&usher);
    assert!(
        files.len() == 1 && files[0].starts_with(&format!("{}/#", data_dir.display())),
        "one unnamed file in the data directory {}: {files:?}",
        data_dir.display()
    );
    assert_eq!(
        std::fs::read_dir(&data_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('#'))
            .count(),
        0,
        "no name left in the directory"
    );
    // The HTTP/1.1 hit, less at most a short tail written by copying; HTTP/2 frames are
    // copied (a miss streams from the origin, not from the file).
    let sent = metric(&usher, "usher_sendfile_bytes_total").await - sent_before;
    assert!(
        sent > (BIG - 16_384) as f64 && sent <= BIG as f64,
        "the plain HTTP/1.1 hit went by sendfile, and only it: {sent} bytes"
    );
    let small = get(&format!("{}/vod/a/s1.ts?ticket={ticket}", usher.url), &[]).await;
    assert_eq!(small.body.len(), 50_000);
    assert_eq!(
        metric(&usher, "usher_cache_mapped_bodies").await,
        1.0,
        "50 KB stays on the heap"
    );

    let memory = serving_twice(
        Usher::start(
            &test_config(&origin.url(), "[shield]\nsendfile_dir = \"\"\n"),
            &[],
        ),
        &path,
    )
    .await;
    assert_eq!(unnamed_files(&memory), ["/memfd:usher-body (deleted)"]);
    assert!(metric(&memory, "usher_sendfile_bytes_total").await > (BIG - 16_384) as f64);

    let off = serving_twice(
        Usher::start(
            &test_config(&origin.url(), "[shield]\nsendfile_min_bytes = 0\n"),
            &[],
        ),
        &path,
    )
    .await;
    assert_eq!(metric(&off, "usher_cache_mapped_bodies").await, 0.0);
    assert_eq!(metric(&off, "usher_sendfile_bytes_total").await, 0.0);
}

/// A `shield.sendfile_dir` that cannot be a directory does not stop usher: it says so in
/// its log and keeps bodies in memory files, which go out whole.
#[tokio::test]
async fn a_sendfile_dir_that_cannot_be_made_falls_back_to_memory_files() {
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let log = dir.path().join("usher.log");
    let config = test_config(
        &origin.url(),
        &format!(
            "[shield]\nsendfile_dir = \"{}/bodies\"\n",
            blocker.display()
        ),
    );
    let path = format!("/vod/a/big.ts?ticket={}", mint("/vod/a/"));
    let usher = serving_twice(Usher::start_logged(&config, &[], &log), &path).await;
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("shield.sendfile_dir cannot hold unnamed files")
            && said.contains(&format!("{}/bodies", blocker.display())),
        "{said}"
    );
    assert_eq!(unnamed_files(&usher), ["/memfd:usher-body (deleted)"]);
}

/// A service manager's soft limit of 256 open files does not cap usher's connections and
/// bodies' files: it raises the soft limit to the hard one at start-up, and says so.
#[tokio::test]
async fn a_low_soft_limit_on_open_files_is_raised_to_the_hard_one() {
    let (_, hard) = usher::open_files::limits().expect("limits are readable");
    assert!(
        hard > 256,
        "the runner's hard limit ({hard}) leaves room to raise"
    );
    let origin = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("usher.log");
    let usher = Usher::start_with_open_files(&test_config(&origin.url(), ""), &log, 256);
    assert_eq!(usher.open_files_limits(), (hard, hard));
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("raised the soft limit on open files")
            && said.contains("before=256")
            && said.contains(&format!("after={hard}")),
        "{said}"
    );
    let reply = get(
        &format!("{}/vod/a/s1.ts?ticket={}", usher.url, mint("/vod/a/")),
        &[],
    )
    .await;
    assert_eq!(reply.status.as_u16(), 200);
}

#[tokio::test]
async fn plain_listener_speaks_h2c_with_prior_knowledge() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let url = format!("{}/vod/a/s1.ts?ticket={}", usher.url, mint("/vod/a/"));
    let reply = fetch(&client, &url).await;
    assert_eq!(
        (reply.version, reply.status.as_u16()),
        (Version::HTTP_2, 200)
    );
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let origin = origin().await;
    let usher = Usher::start(&test_config(&origin.url(), ""), &[]);
    let big = "x".repeat(40_000);
    let addr = usher.url.strip_prefix("http://").unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET /vod/a/s1.ts HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_segment_finish_then_exits() {
    sigterm_with_threads(None).await;
}

/// The same on the shared work-stealing runtime (`listen.threads = 0`) and on three serving
/// threads (three sockets on one address, every one of them closed at the end).
#[tokio::test]
async fn sigterm_drains_whichever_runtime_serves_the_listener() {
    sigterm_with_threads(Some(0)).await;
    sigterm_with_threads(Some(3)).await;
}

async fn sigterm_with_threads(threads: Option<usize>) {
    let origin = origin().await;
    let mut config = test_config(&origin.url(), "");
    if let Some(threads) = threads {
        config = config.replace(
            "drain_timeout = \"5s\"",
            &format!("drain_timeout = \"5s\"\nthreads = {threads}"),
        );
    }
    let mut usher = Usher::start(&config, &[]);
    let port: u16 = usher.url.rsplit(':').next().unwrap().parse().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        listening_sockets(port),
        threads.unwrap_or(cores).max(1),
        "one listening socket per serving thread"
    );
    let url = format!("{}/vod/a/slow.ts?ticket={}", usher.url, mint("/vod/a/"));
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    origin.wait_for_requests(1).await;
    usher.terminate();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 200_000, "the whole segment arrived");
    assert_eq!(usher.wait(), Some(0));
    let addr = usher.url.strip_prefix("http://").unwrap().to_owned();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// The sockets listening on `port` on this machine, from `/proc/net/tcp` and `tcp6`.
fn listening_sockets(port: u16) -> usize {
    let local = format!(":{port:04X}");
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is the second field, st the fourth; 0A is LISTEN.
            if fields.get(1).is_some_and(|l| l.ends_with(&local)) && fields.get(3) == Some(&"0A") {
                count += 1;
            }
        }
    }
    count
}

/// The serving threads share their port among themselves only: a second usher started on
/// the same port fails at start-up, naming the listener, instead of taking some of its
/// connections.
#[tokio::test]
async fn a_second_usher_on_a_port_in_use_fails_to_start() {
    let origin = origin().await;
    let first = Usher::start(&test_config(&origin.url(), ""), &[]);
    let addr = first.url.strip_prefix("http://").unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.toml");
    let config = test_config(&origin.url(), "")
        .replace("http = \"127.0.0.1:0\"", &format!("http = \"{addr}\""));
    std::fs::write(&path, config).unwrap();
    let second = std::process::Command::new(usher_bin())
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = second.id().to_string();
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || second.wait_with_output()),
    )
    .await;
    let Ok(output) = waited else {
        // It serves: stop it, so that the waiting thread (and this test) can end.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        panic!("the second usher started on the port in use instead of failing");
    };
    let output = output.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("listen.http {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
    // The first one still answers every connection.
    for _ in 0..8 {
        assert_eq!(
            get(&format!("{}/healthz", first.url), &[]).await.status,
            200
        );
    }
}

/// Whether usher has closed `conn`: a read ends (EOF or reset) within `within`.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, conn.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Connections past `listen.max_connections` are closed as soon as they are accepted, the
/// ones open keep their place, and a connection that sends nothing at all (not even the
/// bytes that tell HTTP/1.1 from h2) is closed after `listen.idle_timeout`.
#[tokio::test]
async fn silent_connections_are_closed_and_a_full_listener_turns_new_ones_away() {
    let origin = origin().await;
    let config = test_config(&origin.url(), "").replace(
        "[listen]\n",
        "[listen]\nmax_connections = 2\nidle_timeout = \"5s\"\n",
    );
    let usher = Usher::start(&config, &[]);
    let addr = usher.url.trim_start_matches("http://").to_owned();
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // One of the three is closed at once: which one depends on the order in which the
    // serving threads accepted them. Silence closes none before 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let refused = 'found: loop {
        for (n, conn) in conns.iter_mut().enumerate() {
            if closed_within(conn, Duration::from_millis(50)).await {
                break 'found n;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "past the limit, closed at once"
        );
    };
    conns.remove(refused);
    for conn in &mut conns {
        assert!(
            !closed_within(conn, Duration::from_millis(200)).await,
            "the others keep their place"
        );
    }
    // A silent connection ends within two idle timeouts, and its place is free again.
    for conn in &mut conns {
        assert!(closed_within(conn, Duration::from_secs(15)).await);
    }
    // The place is given back as the closed connection's task ends, just after the close
    // the client saw: a new connection may still find the listener full for a moment.
    let ticket = mint("/vod/a/");
    let head = format!(
        "GET /vod/a/s1.ts?ticket={ticket} HTTP/1.1\r\nHost: u\r\nConnection: close\r\n\r\n"
    );
    let mut answered = String::new();
    for _ in 0..100 {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut reply)).await;
        answered = String::from_utf8_lossy(&reply).into_owned();
        if !answered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered:.200}");
}

/// A viewer whose session token has expired plays on while its session is live; that stays
/// true through a restart (SIGTERM, then a new process on the same data directory), since
/// the sessions are kept for the next start.
#[tokio::test]
async fn a_viewer_past_the_session_token_s_expiry_keeps_playing_through_a_restart() {
    let origin = origin().await;
    let data = tempfile::tempdir().unwrap();
    let config =
        test_config(&origin.url(), "").replace("[token]\n", "[token]\nsession_ttl = \"1s\"\n");
    let args = ["--data-dir", data.path().to_str().unwrap()];
    let mut usher = Usher::start(&config, &args);
    let ticket = mint("/vod/a/");
    let playlist = get(
        &format!("{}/vod/a/index.m3u8?ticket={ticket}", usher.url),
        &[],
    )
    .await;
    assert_eq!(playlist.status, 200);
    let uri = playlist
        .text()
        .lines()
        .find(|l| l.starts_with("s1.ts"))
        .expect("a segment line")
        .to_owned();
    assert_eq!(
        get(&format!("{}/vod/a/{uri}", usher.url), &[]).await.status,
        200
    );
    // The token's one second runs out (it counts whole seconds, with no skew here).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = get(&format!("{}/vod/a/{uri}", usher.url), &[]).await;
    assert_eq!(expired.status, 200, "expired, but its session plays");
    usher.terminate();
    assert_eq!(usher.wait(), Some(0));
    let usher = Usher::start(&config, &args);
    let after = get(&format!("{}/vod/a/{uri}", usher.url), &[]).await;
    assert_eq!(after.status, 200, "{}", after.text());
}

/// Whether a client trusting only the CA of `pki` completes a request to `https`.
async fn trusted_by(pki: &Pki, https: &str) -> bool {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_tls(pki))
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let request = Request::get(format!("{https}/healthz"))
        .body(Empty::new())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("an answer or a refusal within 10 s")
        .is_ok()
}

#[tokio::test]
async fn a_reload_presents_the_renewed_certificate_and_refuses_a_broken_one() {
    let origin = origin().await;
    let first = pki();
    let (usher, https) = tls_usher(&origin, &first);
    assert!(trusted_by(&first, &https).await);

    // A renewal writes new files at the same paths, as certbot does, then reloads.
    let renewed = pki();
    let cert = first.dir.path().join("cert.pem");
    let key = first.dir.path().join("key.pem");
    std::fs::copy(renewed.dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::copy(renewed.dir.path().join("key.pem"), &key).unwrap();
    let (status, answer) = support::admin::api(&usher, "POST", "/reload", None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        trusted_by(&renewed, &https).await,
        "the renewed certificate"
    );
    assert!(
        !trusted_by(&first, &https).await,
        "not the first one any more"
    );

    // A key that is not the certificate's: the reload is refused, nothing changes.
    std::fs::copy(pki().dir.path().join("key.pem"), &key).unwrap();
    let (status, answer) = support::admin::api(&usher, "POST", "/reload", None).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["problems"].to_string().contains("listen.cert"),
        "{answer}"
    );
    assert!(
        trusted_by(&renewed, &https).await,
        "still the renewed certificate"
    );
}
