# syntax=docker/dockerfile:1
# usher — HLS streaming gateway. Build: docker build -t usher .
# Run:   docker run --rm -p 8080:8080 -p 9090:9090 usher

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache the cargo registry and target dir between builds (BuildKit); the binary is
# copied out of the cache mount inside the same RUN step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin usher \
 && install -Dm755 target/release/usher /out/usher

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# CA roots for TLS to upstream origins (hyper-rustls uses the system store).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 usher \
 && useradd --system --uid 10001 --gid usher --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin usher \
 && install -d -o usher -g usher -m 700 /var/lib/usher
COPY --from=builder /out/usher /usr/local/bin/usher
COPY config/ /etc/usher/
COPY demo/ /usr/share/usher/demo/
USER usher:usher
# The embedded database, the generated admin token and the shield's unnamed body files live
# here. The config's own data_dir ("../data" beside /etc/usher) is not writable by the usher
# user, so the command below points --data-dir here. Mount a volume to keep purchases across
# containers: docker run -v usher-data:/var/lib/usher ...
VOLUME /var/lib/usher
# 8080: HLS gateway, 9090: metrics/admin
EXPOSE 8080 9090
ENTRYPOINT ["usher"]
# Inside a container the public listener must bind all interfaces; the admin listener stays
# on loopback unless you publish it deliberately (--admin-listen 0.0.0.0:9090).
CMD ["serve", "--config", "/etc/usher/usher.toml", "--origin", "/usr/share/usher/demo", \
     "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/usher"]
