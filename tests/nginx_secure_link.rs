//! A real nginx with `secure_link` in front: it sends playlists to usher, which rewrites
//! them minting `secure_link_md5` links, and serves media from disk itself only when the
//! link verifies. ffprobe plays the demo through nginx; a tampered link is refused.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const SECRET: &str = "nginx-shared-secret";

struct Nginx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_nginx(usher: &str, root: &str) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    server {{
        listen 127.0.0.1:{port};
        location ~ \.m3u8$ {{
            proxy_pass {usher};
        }}
        location / {{
            root {root};
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri {SECRET}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
        }}
    }}
}}
"#
    );
    let path = dir.path().join("nginx.conf");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let bin = if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let child = Command::new(bin)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx is installed (scripts/test installs it)");
    // nginx prints nothing when ready: wait for its port to accept, bounded.
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

#[tokio::test]
async fn nginx_accepts_links_usher_minted_and_refuses_tampered_ones() {
    let root = demo_dir();
    let extra = format!(
        "[[routes]]\nprefix = \"/demo/\"\nmint = \"secure_link\"\n\
         [secure_link]\nexpression = \"$secure_link_expires$uri $secret\"\nsecret = \"{SECRET}\"\nttl = \"1h\"\n"
    );
    let usher = Usher::start(&test_config(root.to_str().unwrap(), &extra), &[]);
    let nginx = start_nginx(&usher.url, root.to_str().unwrap());

    let ticket = mint("/demo/");
    let master = format!("{}/demo/master.m3u8?ticket={ticket}", nginx.url);
    let reply = get(&master, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let variant = reply
        .text()
        .lines()
        .find(|l| l.starts_with("360p/"))
        .unwrap()
        .to_owned();
    assert!(
        variant.contains("token=s2."),
        "playlists keep usher's token: {variant}"
    );
    let media_url = resolve(&master, &variant);
    let media = get(&media_url, &[]).await.text();
    let segment = media
        .lines()
        .find(|l| l.starts_with("seg_000.ts"))
        .unwrap()
        .to_owned();
    assert!(
        segment.contains("?md5=") && segment.contains("&expires="),
        "{segment}"
    );
    let segment_url = resolve(&media_url, &segment);

    let served = get(&segment_url, &[]).await;
    assert_eq!(served.status, 200, "nginx verified usher's link");
    let on_disk = std::fs::read(root.join("demo/360p/seg_000.ts")).unwrap();
    assert_eq!(served.body.as_ref(), on_disk.as_slice());

    let md5 = segment
        .split("md5=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let flipped = if md5.starts_with('A') {
        md5.replacen('A', "B", 1)
    } else {
        format!("A{}", &md5[1..])
    };
    let tampered = segment_url.replace(md5, &flipped);
    assert_eq!(get(&tampered, &[]).await.status, 403);
    let other_file = segment_url.replace("seg_000.ts", "seg_001.ts");
    assert_eq!(
        get(&other_file, &[]).await.status,
        403,
        "a link opens only its own path"
    );
    let longer = segment_url.replace("&expires=", "&expires=9");
    assert_eq!(
        get(&longer, &[]).await.status,
        403,
        "the expiry is signed too"
    );

    // And a real player through nginx and usher.
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &master,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("h264"));
}
