//! Issue 12, "every object kind": the per-request cost of a 1 KiB object that is neither a
//! playlist nor a segment (a `.bin` key), as a shield hit and from the directory origin.
//!
//! ```text
//! cargo bench --bench objects -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use usher::config::{self, Overrides};
use usher::metrics::Metrics;
use usher::path::ObjectKind;
use usher::proxy::upstream::{DirOrigin, Group, UpstreamRequest};
use usher::shield::{Shield, Wants};

const PATH: &str = "/keys/k1.bin";

fn dir_with_object() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/k1.bin"), [7u8; 1024]).unwrap();
    dir
}

fn request() -> UpstreamRequest {
    UpstreamRequest {
        method: Method::GET,
        path_and_query: PATH.to_owned(),
        headers: HeaderMap::new(),
        bounded: false,
    }
}

fn bench_objects(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = dir_with_object();
    let mut group = c.benchmark_group("object_1k");
    group.throughput(Throughput::Bytes(1024));

    let origin = DirOrigin::new(dir.path()).unwrap();
    let req = request();
    group.bench_function("dir_origin", |b| {
        b.to_async(&rt).iter(|| async {
            let response = origin.serve(black_box(&req)).await;
            black_box(response.into_body().collect().await.unwrap().to_bytes())
        })
    });

    let text = format!(
        "upstream.origin = \"{}\"\nlisten.http = \"127.0.0.1:0\"\n[token]\nsigning_key = \"k\"\n\
         keys = [{{ id = \"k\", secret = \"0123456789abcdef0123456789abcdef\" }}]\n",
        dir.path().display()
    );
    let config = config::from_str(&text, dir.path(), &Overrides::default()).unwrap();
    let metrics = Metrics::new();
    let upstream = Arc::new(Group::new("", &config.upstream, &metrics).unwrap());
    let shield = Shield::new(&config.shield, &metrics);
    let kind = ObjectKind::of(PATH);
    // A plain GET: the body, no conditions.
    const GET: Wants<'static> = Wants {
        head_only: false,
        conditions: None,
        private: false,
    };
    // The same, its headers made private for shared caches (a cookie's or a bearer's).
    const PRIVATE: Wants<'static> = Wants {
        private: true,
        ..GET
    };
    assert!(shield.applies(&Method::GET, kind, PATH, &HeaderMap::new()));
    rt.block_on(async {
        let first = shield.fetch(&upstream, PATH, None, kind, GET, Instant::now());
        let first = first.await.unwrap().unwrap();
        first.into_body().collect().await.unwrap();
    });
    group.bench_function("shield_hit", |b| {
        b.to_async(&rt).iter(|| async {
            let response = shield
                .fetch(&upstream, black_box(PATH), None, kind, GET, Instant::now())
                .await
                .unwrap();
            let body = response.unwrap().into_body().collect().await.unwrap();
            black_box(body.to_bytes())
        })
    });
    group.bench_function("shield_hit_private", |b| {
        b.to_async(&rt).iter(|| async {
            let response = shield
                .fetch(
                    &upstream,
                    black_box(PATH),
                    None,
                    kind,
                    PRIVATE,
                    Instant::now(),
                )
                .await
                .unwrap();
            let body = response.unwrap().into_body().collect().await.unwrap();
            black_box(body.to_bytes())
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50)
}

criterion_group! {
    name = objects;
    config = config();
    targets = bench_objects
}
criterion_main!(objects);
