#!/usr/bin/env bash
# Generate the small demo HLS VOD served by usher from the local origin `demo/`.
# Output: demo/demo/master.m3u8 + 360p/ and 180p/ renditions (MPEG-TS, 2 s segments, ~6 s).
# Requires ffmpeg/ffprobe with libx264 and the native AAC encoder.
set -euo pipefail

cd "$(dirname "$0")"
OUT=demo
DURATION=6   # seconds of content
SEG=2        # segment length (seconds); keyframes are forced on this grid
FPS=25

rm -rf "$OUT"
mkdir -p "$OUT"

# encode NAME WIDTH HEIGHT VIDEO_KBPS AUDIO_KBPS H264_LEVEL
encode() {
  local name=$1 w=$2 h=$3 vk=$4 ak=$5 level=$6
  mkdir -p "$OUT/$name"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i "testsrc2=size=${w}x${h}:rate=${FPS}" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$DURATION" -map 0:v -map 1:a -map_metadata -1 \
    -c:v libx264 -profile:v baseline -level:v "$level" -pix_fmt yuv420p -threads 1 \
    -b:v "${vk}k" -maxrate "${vk}k" -bufsize "$((vk * 2))k" \
    -g $((FPS * SEG)) -keyint_min $((FPS * SEG)) -sc_threshold 0 \
    -force_key_frames "expr:gte(t,n_forced*${SEG})" \
    -c:a aac -b:a "${ak}k" -ac 1 -ar 48000 \
    -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
    -f hls -hls_time "$SEG" -hls_playlist_type vod -hls_flags independent_segments \
    -hls_segment_type mpegts -hls_segment_filename "$OUT/$name/seg_%03d.ts" \
    "$OUT/$name/index.m3u8"
}

# Peak bandwidth (bits/s) of a media playlist: max over segments of size*8/EXTINF.
peak_bps() {
  local dir=$1
  awk -v dir="$dir" '
    /^#EXTINF:/ { sub(/^#EXTINF:/, ""); dur = $0 + 0; next }
    /^[^#]/ && dur > 0 {
      cmd = "wc -c < \"" dir "/" $0 "\""; cmd | getline bytes; close(cmd)
      bps = bytes * 8 / dur; if (bps > max) max = bps
    }
    END { printf "%d\n", max + 0.5 }' "$dir/index.m3u8"
}

# Baseline profile => avc1.42c0LL (constraint_set0+1 flags); LL = level in hex.
encode 360p 640 360 300 64 3.0   # avc1.42c01e
encode 180p 320 180 120 48 1.3   # avc1.42c00d

# Master playlist, written by hand. BANDWIDTH is the measured per-segment peak.
cat > "$OUT/master.m3u8" <<M3U
#EXTM3U
#EXT-X-VERSION:3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=$(peak_bps "$OUT/360p"),RESOLUTION=640x360,FRAME-RATE=${FPS}.000,CODECS="avc1.42c01e,mp4a.40.2"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=$(peak_bps "$OUT/180p"),RESOLUTION=320x180,FRAME-RATE=${FPS}.000,CODECS="avc1.42c00d,mp4a.40.2"
180p/index.m3u8
M3U

echo "Wrote $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
echo "Total size: $(du -sh "$OUT" | cut -f1) ($(find "$OUT" -type f -exec cat {} + | wc -c) bytes)"
