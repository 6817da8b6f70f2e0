//! A TCP relay between a node and Redis that a test can turn into a black hole: the
//! connections it holds go silent (open, carrying nothing), as a half-open connection or a
//! partition that sends no reset leaves them, while new ones are relayed. It can also
//! write a session's end marker just ahead of the node's next touch of it, as another
//! node ending the session by id at that moment would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP relay on loopback to one upstream address, running on a thread of its own (a
/// node starting up blocks this test's thread while it connects through the relay).
pub struct Relay {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    /// Bumped by [`Relay::black_hole`]: connections accepted before go silent.
    generation: watch::Sender<u64>,
    /// What [`Relay::end_before_touch`] asked for, seen by every connection.
    ender: Arc<Ender>,
}

impl Relay {
    /// Relays every connection to `upstream` (`127.0.0.1:PORT`), both ways.
    pub fn start(upstream: String) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let (generation, watching) = watch::channel(0u64);
        let ender = Arc::new(Ender {
            upstream: upstream.clone(),
            armed: Mutex::new(None),
            ended: AtomicBool::new(false),
        });
        let requests = ender.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let born = *watching.borrow();
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let to_server = Some(requests.clone());
                    tokio::spawn(pump(
                        client_read,
                        server_write,
                        watching.clone(),
                        born,
                        to_server,
                    ));
                    tokio::spawn(pump(
                        server_read,
                        client_write,
                        watching.clone(),
                        born,
                        None,
                    ));
                }
            });
        });
        Relay {
            url,
            generation,
            ender,
        }
    }

    /// From now on the connections open so far carry nothing either way, and stay open;
    /// connections made later are relayed.
    pub fn black_hole(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The next touch of session `sid` the node sends (its pipeline writes the session's
    /// last-seen time and reads its end marker) is held until the relay has written that
    /// marker itself, as another node ending the session by id at that moment would.
    pub fn end_before_touch(&self, sid: &str) {
        *self.ender.armed.lock().unwrap() = Some(sid.to_owned());
    }

    /// Whether the relay wrote the marker [`Relay::end_before_touch`] asked for.
    pub fn ended(&self) -> bool {
        self.ender.ended.load(Ordering::SeqCst)
    }
}

/// Writes a session's end marker ahead of the node's touch of it.
struct Ender {
    /// Redis, `127.0.0.1:PORT`.
    upstream: String,
    /// The session whose touch it waits for.
    armed: Mutex<Option<String>>,
    /// Whether it wrote the marker.
    ended: AtomicBool,
}

impl Ender {
    /// Called with each `request` (bytes a node sends to Redis, one read) before it goes
    /// on: when it is the touch of the armed session (usher sends a pipeline in one
    /// write), the session's marker `usher:end:{sid}` is written first.
    async fn before(&self, request: &[u8]) {
        let marker = {
            let armed = self.armed.lock().unwrap();
            let Some(sid) = armed.as_deref() else {
                return;
            };
            let marker = format!("usher:end:{{{sid}}}");
            let has = |needle: &[u8]| request.windows(needle.len()).any(|w| w == needle);
            if !(has(b"HSET") && has(marker.as_bytes())) {
                return;
            }
            marker
        };
        let set = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{marker}\r\n$1\r\n1\r\n",
            marker.len()
        );
        let mut redis = TcpStream::connect(&self.upstream).await.unwrap();
        redis.write_all(set.as_bytes()).await.unwrap();
        let mut answer = [0u8; 5];
        redis.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"+OK\r\n");
        self.armed.lock().unwrap().take();
        self.ended.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes, or until the relay's generation passes
/// `born`: then it holds both halves open and copies nothing more. `ender`: on a node's
/// side, sees each read before it goes on.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut generation: watch::Receiver<u64>,
    born: u64,
    ender: Option<Arc<Ender>>,
) {
    let cut = async move {
        let _ = generation.wait_for(|g| *g > born).await;
    };
    tokio::pin!(cut);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(ender) = &ender {
                        ender.before(&buf[..n]).await;
                    }
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            () = &mut cut => break,
        }
    }
    let _held = (from, to);
    std::future::pending::<()>().await;
}
