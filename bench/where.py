#!/usr/bin/env python3
"""Where kms-api's CPU time goes, from a perf profile (bench/profile).

    perf script -i perf.data | python3 bench/where.py > where.md

Each sample goes to one category: first the kernel's I/O and scheduling
(when any frame of its stack is one of them: the audit's fdatasync and
write, TCP over loopback, sleeping and waking threads), else the first
frame from the leaf up that names a part of kms-api or a library it runs
on. TLS includes the AES-GCM of its records; "crypto" is the key use
itself. Prints a Markdown table of shares."""
import re, sys, collections
KERNEL = [
    ("audit sync (fdatasync)", r"^(__x64_sys_fdatasync|__x64_sys_fsync|do_fsync|ext4_sync_file)"),
    ("audit write (kernel)", r"^(ext4_file_write_iter|ext4_buffered_write_iter)"),
    ("TCP / loopback (kernel)", r"^(tcp_|__tcp_|inet_|sock_sendmsg|sock_recvmsg|sock_write_iter|sock_read_iter|__sys_sendto|__sys_recvfrom|__sys_sendmsg|__sys_recvmsg|ip_finish_output|__netif_receive|net_rx_action|loopback_xmit)"),
    ("thread hand-offs (kernel: sleep, wake, switch)", r"^(futex_|__x64_sys_futex|do_futex|__schedule|schedule\b|schedule_hrtimeout|do_epoll|ep_poll|__x64_sys_epoll|try_to_wake_up|__x64_sys_sched_yield|finish_task_switch|__x64_sys_nanosleep)"),
]
USER = [
    ("audit MAC", r"kms_api::audit.*mac|skm_crypto::audit|hmac::"),
    ("audit encoding", r"kms_api::audit::format|serde_json::|serde::ser"),
    ("audit bookkeeping (writer, journal, anchor)", r"kms_api::audit|kms_api::anchor"),
    ("access check", r"kms_api::access"),
    ("crypto (the key use)", r"skm_crypto::"),
    ("TLS (rustls, its AES-GCM included)", r"rustls::|tokio_rustls::"),
    ("protobuf (prost)", r"prost::|ProstCodec|ProstEncoder|ProstDecoder|encode_raw|merge_field|encoded_len"),
    ("HTTP/2 (h2)", r"^h2::|<h2::"),
    ("tonic / hyper / tower / skm_runtime layers", r"tonic::|hyper::|tower::|skm_runtime::|http_body|hyper_util::"),
    ("domain core (kms_api::kms, cache, store)", r"kms_api::|skm_store::|sled::"),
    ("allocation (malloc/free)", r"^(malloc|free|realloc|cfree|_int_malloc|_int_free|__libc_malloc|__libc_free)"),
    ("tokio runtime", r"tokio::"),
]
kx = [(n, re.compile(p)) for n, p in KERNEL]
ux = [(n, re.compile(p)) for n, p in USER]
counts = collections.Counter(); total = 0
stack = []
def classify(frames):
    for n, r in kx:
        if any(r.search(f) for f in frames):
            return n
    for f in frames:  # leaf first
        for n, r in ux:
            if r.search(f):
                return n
    return "other (kernel entry, libc, unresolved)"
def flush():
    global total, stack
    if stack:
        total += 1
        counts[classify(stack)] += 1
    stack = []
for line in sys.stdin:
    if not line.strip():
        flush(); continue
    if line[0] in " \t":
        parts = line.strip().split(None, 1)
        if len(parts) == 2: stack.append(parts[1])
    else:
        flush()
flush()
print("| where | share of kms-api CPU |\n|---|---:|")
for n, _ in KERNEL + USER + [("other (kernel entry, libc, unresolved)", None)]:
    if counts[n]:
        print(f"| {n} | {100*counts[n]/total:.1f} % |")
print(f"\n{total} samples", file=sys.stderr)
