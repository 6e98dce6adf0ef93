#!/usr/bin/env python3
"""pds-facade benchmark suite (standard library only; `bench/run` installs and builds first).

Everything runs on loopback on this machine, in one run, bounded in time:

1. GET /Patient/{id} at 1, 16 and 64 connections (wrk): pds-facade vs a bare axum route that
   answers the same bytes from memory (`examples/ceiling.rs`) — the HTTP ceiling here.
2. Durable PATCH at 1, 16 and 64 connections (wrk, each connection updating its own patient)
   vs PostgreSQL (Debian package, started here, fsync and synchronous_commit on) doing the
   equivalent jsonb update of one row per transaction with pgbench at the same concurrency;
   and the disk's raw fsync rate (one writer, 4 KiB + fdatasync) as the floor.
3. Scale: the above at each data size, import rate, database file size, RSS, start-up time.

The patients are `pds-facade generate --shape national` by default (PDS-rich records in an
England-shaped population; `--shape uniform` for the small evenly drawn ones); at 5 M patients
and more they are streamed from `generate` into `import /dev/stdin` instead of written to disk.
The superseded duplicates of a national population are merged through `POST /Patient/$merge`
before anything is measured. Per request, the server's CPU time (/proc/PID/stat) and writes
(/proc/PID/io; syscalls per change with strace) are reported; at 1 M (or the largest scale,
when the run has no 1 M), with --compare-uniform, the same count of uniform patients is
measured beside it.

Writes results.json, report.md and chart.svg to the output directory; with --update-benchmarks
the report also replaces the generated section of BENCHMARKS.md. Asserts nothing about speed.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "pds-facade"
CEILING = ROOT / "target" / "release" / "examples" / "ceiling"
CONNECTIONS = (1, 16, 64)
SEED = 20261127
ID_AT_LINE_START = re.compile(r'^\{"resourceType":"Patient","id":"(\d{10})"')
# from this many patients on, nothing is written to disk: `generate` streams into `import`
STREAM_AT = 5_000_000
# $merge requests in flight at once after an import
MERGE_THREADS = 8
# the searches measured, each a file of queries built from the same sample of patients
SEARCH_SHAPES = {
    "family_birthdate": "family + birthdate",
    "family_given_gender_birthdate": "family + given + gender + birthdate",
    "family_postcode": "family + postcode (+ birth year)",
    "wildcard_birthdate": "family prefix* + birthdate",
    "fuzzy": "fuzzy: misspelt family + given + birthdate",
}
# Bytes a store holds per byte of NDJSON, by shape, for the disk check at streamed scales (the
# measured figure at 1 M with about 60 % to spare). PostgreSQL keeps documents twice, as rows
# and history, plus indexes and WAL: measured 1.08 (national), 3.16 (uniform). A redb file of
# store format 2 holds records compressed: measured 0.47 (national), 1.26 (uniform).
PG_BYTES_PER_INPUT_BYTE = {"national": 1.7, "uniform": 3.5}
REDB_BYTES_PER_INPUT_BYTE = {"national": 0.75, "uniform": 2.0}


def log(*parts):
    print("[bench]", *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


class Server:
    """A process that prints `listening on http://ADDR` first; start-up time is measured to it."""

    def __init__(self, args, env=None):
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline().strip()
        self.startup_s = time.monotonic() - started
        if not line.startswith("listening on "):
            self.proc.kill()
            raise SystemExit(f"server did not start: {args}: {line!r}")
        self.url = line[len("listening on "):]

    def memory_mib(self):
        """(current RSS, peak RSS) in MiB."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        kib = lambda k: int(fields.get(k, "0 kB").split()[0])  # noqa: E731
        return kib("VmRSS") / 1024, kib("VmHWM") / 1024

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(script, url, connections, seconds, args, threads=None):
    threads = threads or min(connections, 2)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(ROOT / "bench" / script), url, "--"] + [str(a) for a in args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            r["ok_per_s"] = (r["requests"] - r["non2xx"] - r["errors"]) / r["seconds"]
            return r
    raise SystemExit(f"no result from wrk: {out}")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def io_counters(pid):
    """/proc/PID/io: wchar (bytes passed to write calls) and write_bytes (bytes sent to storage)."""
    with open(f"/proc/{pid}/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["wchar"]), int(fields["write_bytes"])


def ok_count(r):
    return r["requests"] - r["non2xx"] - r["errors"]


def measured(pid, run):
    """`run()`'s wrk result with the server's CPU seconds and writes during it."""
    cpu, (wchar, written) = cpu_seconds(pid), io_counters(pid)
    r = run()
    wchar2, written2 = io_counters(pid)
    r["server_cpu_s"] = cpu_seconds(pid) - cpu
    r["server_wchar"], r["server_write_bytes"] = wchar2 - wchar, written2 - written
    return r


def get_run(url, ids_file, seconds, pid=None):
    wrk("get.lua", url, 16, 1, [ids_file])  # warm-up
    if pid is None:
        return {c: wrk("get.lua", url, c, seconds, [ids_file]) for c in CONNECTIONS}
    return {c: measured(pid, lambda c=c: wrk("get.lua", url, c, seconds, [ids_file])) for c in CONNECTIONS}


def search_run(url, queries_file, seconds):
    wrk("search.lua", url, 16, 1, [queries_file])  # warm-up
    return {c: wrk("search.lua", url, c, seconds, [queries_file]) for c in CONNECTIONS}


def search_shapes_run(url, files, seconds, connections=16, measured_already=None):
    """Each search shape at one connection count (a one-second warm-up each); shapes already
    measured at that count (`measured_already`) are taken as they are."""
    out = dict(measured_already or {})
    for shape, path in files.items():
        if shape in out or not Path(path).read_text().strip():
            continue  # measured, or no patient of the sample has what this shape searches by
        wrk("search.lua", url, connections, 1, [path])
        out[shape] = wrk("search.lua", url, connections, seconds, [path])
    return {shape: out[shape] for shape in files if shape in out}


def patch_run(url, ids_file, token, seconds, run, pid=None):
    results = {}
    for c in CONNECTIONS:
        run += 1
        go = lambda c=c, run=run: wrk("patch.lua", url, c, seconds, [ids_file, token, run], threads=c)  # noqa: E731
        results[c] = go() if pid is None else measured(pid, go)
    return results


def strace_patch(url, pid, ids_file, token, seconds, run, work):
    """A separate short single-connection PATCH run under `strace -c -f`: syscalls per change."""
    if not shutil.which("strace"):
        return {"skipped": "strace is not installed"}
    out = Path(work) / "strace.txt"
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # attached to every thread
    if tracer.poll() is not None:
        return {"skipped": f"strace could not attach: {tracer.stderr.read().strip()[:200]}"}
    try:
        r = wrk("patch.lua", url, 1, seconds, [ids_file, token, run], threads=1)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
    calls = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3])
    changes = max(1, ok_count(r))
    per = lambda *names: sum(calls.get(n, 0) for n in names) / changes  # noqa: E731
    return {"changes": ok_count(r), "seconds": r["seconds"],
            "pwrite": per("pwrite64", "pwrite", "pwritev", "pwritev2"),
            "fdatasync": per("fdatasync"), "fsync": per("fsync"),
            "write": per("write", "writev"), "calls": calls}


def merge_all(url, token, pairs, threads=MERGE_THREADS):
    """`POST /Patient/$merge` (back office) for every (source, target) pair, `threads` at once;
    any answer but 200 stops the benchmark."""
    if not pairs:
        return {"pairs": 0, "threads": 0, "seconds": 0.0}
    where = urlsplit(url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    def identifier(name, nhs):
        return {"name": name, "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}}

    def worker(chunk):
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
        try:
            for source, target in chunk:
                body = json.dumps({"resourceType": "Parameters", "parameter": [
                    identifier("source-patient-identifier", source), identifier("target-patient-identifier", target),
                    {"name": "reason", "valueString": "Duplicate registration (benchmark)"}]})
                conn.request("POST", "/Patient/$merge", body, dict(headers, **{"X-Request-ID": str(uuid.uuid4())}))
                answer = conn.getresponse()
                text = answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"$merge {source} into {target}: {answer.status} {text[:300]!r}")
        finally:
            conn.close()

    threads = min(threads, len(pairs))
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for job in [pool.submit(worker, pairs[k::threads]) for k in range(threads)]:
            try:
                job.result()
            except Exception as e:  # noqa: BLE001 — a failed merge is a benchmark error
                raise SystemExit(f"bench error: merging the superseded records failed: {e}")
    return {"pairs": len(pairs), "threads": threads, "seconds": time.monotonic() - started}


def fsync_floor(directory, seconds):
    """One writer overwriting 4 KiB and calling fdatasync, as fast as the disk allows."""
    path = Path(directory) / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * 4096
    count, started = 0, time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            count += 1
    finally:
        os.close(fd)
        path.unlink()
    return count / (time.monotonic() - started)


# ---------------------------------------------------------------- PostgreSQL


class Postgres:
    """A throwaway cluster: unix socket only, fsync and synchronous_commit on (the defaults)."""

    def __init__(self, work):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            raise SystemExit("PostgreSQL is not installed (bench/run installs it)")
        self.bin = bins[-1].parent
        self.dir = Path(work) / "pg"
        self.dir.mkdir()
        self.as_owner = []
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to `postgres`
            shutil.chown(work, "postgres")
            shutil.chown(self.dir, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = str(s.getsockname()[1])
        self.owner([self.bin / "initdb", "-D", self.dir, "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-instructions"])
        options = (f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                   "-c shared_buffers=256MB -c fsync=on -c synchronous_commit=on")
        self.owner([self.bin / "pg_ctl", "-D", self.dir, "-o", options, "-l", self.dir / "log",
                    "-w", "start"])
        self.version = self.psql("SHOW server_version").strip()

    def owner(self, cmd):
        subprocess.run(self.as_owner + [str(c) for c in cmd], check=True, capture_output=True)

    def conn(self):
        return ["-h", str(self.dir), "-p", self.port, "-U", "postgres"]

    def psql(self, sql, stdin=None):
        return subprocess.run(["psql", *self.conn(), "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              input=stdin, capture_output=True, text=True, check=True).stdout

    def load(self, lines):
        """The same patients (NDJSON lines) as jsonb rows: (k serial key, NHS number, version, document)."""
        self.psql("DROP TABLE IF EXISTS patients; CREATE TABLE patients (k bigserial PRIMARY KEY,"
                  " id bigint UNIQUE NOT NULL, version int NOT NULL DEFAULT 1, doc jsonb NOT NULL)")
        copy = subprocess.Popen(["psql", *self.conn(), "-qX", "-v", "ON_ERROR_STOP=1", "-c",
                                 "COPY patients (id, doc) FROM STDIN"],
                                stdin=subprocess.PIPE, text=True)
        for line in lines:
            m = ID_AT_LINE_START.match(line)
            if m:  # text COPY format: backslashes escaped
                copy.stdin.write(m.group(1) + "\t" + line.rstrip("\n").replace("\\", "\\\\") + "\n")
        copy.stdin.close()
        if copy.wait() != 0:
            raise SystemExit("loading PostgreSQL failed")
        self.psql("DROP TABLE IF EXISTS versions, audit, requests;"
                  " CREATE TABLE versions (id bigint, version int, doc jsonb NOT NULL, PRIMARY KEY (id, version));"
                  " INSERT INTO versions SELECT id, version, doc FROM patients;"
                  " CREATE TABLE audit (seq bigserial PRIMARY KEY, id bigint NOT NULL, version int NOT NULL, entry jsonb NOT NULL);"
                  " CREATE TABLE requests (request_id text PRIMARY KEY, saved_at bigint NOT NULL, response jsonb NOT NULL)")
        self.psql("VACUUM ANALYZE")

    # the jsonb update the issue asks for; and the same update with the other rows pds-facade
    # writes for a PATCH (the version kept in the history, an audit entry, the response saved
    # for retries under its X-Request-ID), to show how much of the difference is the work
    UPDATE = ("UPDATE patients SET doc = jsonb_set(doc, '{gender}', to_jsonb(CASE WHEN version % 2 = 0"
              " THEN 'female'::text ELSE 'male'::text END)), version = version + 1 WHERE k = :k")
    WORKLOADS = {
        "update": UPDATE + ";",
        "same_writes": (
            "WITH u AS (" + UPDATE + " RETURNING id, version, doc),"
            " v AS (INSERT INTO versions SELECT id, version, doc FROM u),"
            " a AS (INSERT INTO audit (id, version, entry) SELECT id, version,"
            " jsonb_build_object('operation', 'patch', 'path', '/gender', 'at', now()) FROM u)"
            " INSERT INTO requests SELECT gen_random_uuid()::text, extract(epoch FROM now())::bigint,"
            " doc FROM u;"),
    }

    # reads as plain PostgreSQL does them: a document by its key, and the exact search
    # (family name and birth date) through an expression index, the query drawn from the same
    # sample pds-facade is searched with
    READS = {
        "get": "\\set k random(1, :rows)\nSELECT doc FROM patients WHERE k = :k;",
        "search": ("\\set q random(1, :queries)\nSELECT p.doc FROM patients p, queries q WHERE q.i = :q"
                   " AND lower(p.doc #>> '{name,0,family}') = q.family AND p.doc ->> 'birthDate' = q.birth;"),
    }

    def url(self, database):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        self.psql(f"DROP DATABASE IF EXISTS {name}")
        self.psql(f"CREATE DATABASE {name}")

    def database_bytes(self, name):
        return int(self.psql(f"SELECT pg_database_size('{name}')").strip())

    def load_queries(self, queries):
        """The search sample as a table, and the index plain PostgreSQL would search with."""
        rows = "\n".join(f"{i + 1}\t{f.lower()}\t{b}" for i, (f, b) in enumerate(queries))
        self.psql("DROP TABLE IF EXISTS queries; CREATE TABLE queries (i int PRIMARY KEY, family text, birth text)")
        subprocess.run(["psql", *self.conn(), "-qX", "-v", "ON_ERROR_STOP=1", "-c", "COPY queries FROM STDIN"],
                       input=rows + "\n", text=True, check=True, capture_output=True)
        self.psql("CREATE INDEX IF NOT EXISTS patients_family_birth ON patients"
                  " (lower(doc #>> '{name,0,family}'), (doc ->> 'birthDate')); ANALYZE")
        self.queries = len(queries)

    def pgbench_read(self, workload, connections, seconds, out_dir, rows):
        script = Path(out_dir) / f"{workload}.sql"
        script.write_text(self.READS[workload] + "\n")
        return self._pgbench(script, connections, seconds, out_dir,
                             ["-D", f"rows={rows}", "-D", f"queries={getattr(self, 'queries', 1)}"])

    def pgbench(self, connections, seconds, out_dir, workload="update"):
        """Each client updates its own row, one transaction per update, as pds-facade's PATCH."""
        script = Path(out_dir) / f"{workload}.sql"
        script.write_text("\\set k :client_id + 1\n" + self.WORKLOADS[workload] + "\n")
        return self._pgbench(script, connections, seconds, out_dir, [])

    def _pgbench(self, script, connections, seconds, out_dir, extra):
        prefix = Path(out_dir) / f"pglog{connections}"
        out = subprocess.run(["pgbench", *self.conn(), "-n", "-M", "prepared",
                              "-c", str(connections), "-j", str(min(connections, 2)),
                              "-T", str(seconds), "-f", str(script), "-l", *extra,
                              f"--log-prefix={prefix}", "postgres"],
                             capture_output=True, text=True, check=True, cwd=out_dir).stdout
        tps = float(re.search(r"tps = ([\d.]+) \(without initial", out).group(1))
        latencies = []
        for log_file in Path(out_dir).glob(f"{prefix.name}*"):
            with open(log_file) as f:
                latencies += [int(line.split()[2]) for line in f if line.strip()]
            log_file.unlink()
        latencies.sort()
        pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] / 1000  # noqa: E731
        return {"ok_per_s": tps, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                "requests": len(latencies)}

    def stop(self):
        try:
            self.owner([self.bin / "pg_ctl", "-D", self.dir, "-m", "fast", "-w", "stop"])
        except subprocess.CalledProcessError:
            pass


# ---------------------------------------------------------------- data


def generate_cmd(shape, count, every=1, out=None, merges=None):
    cmd = [BIN, "generate", "--shape", shape, "--count", count, "--seed", SEED]
    if every > 1:
        cmd += ["--every", every]
    if out:
        cmd += ["--out", out]
    if merges:
        cmd += ["--merges-out", merges]
    return [str(c) for c in cmd]


class Data:
    """One scale's patients: a cached NDJSON file (deterministic, kept between runs, named with
    the shape), or — from STREAM_AT patients on — `generate` itself, streamed wherever the
    patients are needed and sampled with `--every`, so that nothing that size is written."""

    def __init__(self, shape, count, cache, work):
        self.shape, self.count = shape, count
        self.streamed = count >= STREAM_AT
        national = shape == "national"
        if self.streamed:
            self.path = None
            self.merges = Path(work) / f"merges-{shape}-{count}.txt" if national else None
            return
        cache.mkdir(parents=True, exist_ok=True)
        self.path = cache / f"patients-{shape}-{count}-{SEED}.ndjson"
        self.merges = cache / f"merges-{shape}-{count}-{SEED}.txt" if national else None
        if not self.path.exists() or (self.merges and not self.merges.exists()):
            log(f"generating {count} {shape} patients")
            tmp = self.path.with_suffix(".tmp")
            merges_tmp = self.merges.with_suffix(".tmp") if self.merges else None
            subprocess.run(generate_cmd(shape, count, out=tmp, merges=merges_tmp), check=True,
                           stderr=subprocess.DEVNULL)
            if merges_tmp:
                merges_tmp.rename(self.merges)
            tmp.rename(self.path)

    def lines(self, every=1, first=None):
        """The patients i with i % every == 0 (or the first `first` of them), as NDJSON lines."""
        if self.path and every == 1:
            with open(self.path) as f:
                for n, line in enumerate(f):
                    if first is not None and n >= first:
                        return
                    yield line
            return
        gen = subprocess.Popen(generate_cmd(self.shape, self.count, every), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, bufsize=1 << 20)
        try:
            for n, line in enumerate(gen.stdout):
                if first is not None and n >= first:
                    break
                yield line
        finally:
            gen.stdout.close()  # a reader that stops early closes the pipe: generate stops
            gen.wait()

    def sample(self, limit):
        """An even sample of at most about `limit` patients (the same as the file's lines)."""
        return self.lines(every=max(1, self.count // limit))

    def pairs(self):
        """The superseded (source, target) pairs to merge, once the patients were written."""
        if not self.merges:
            return []
        return [tuple(line.split()) for line in self.merges.read_text().splitlines() if line.strip()]

    def mean_bytes(self):
        sizes = [len(line.encode()) for line in self.sample(1000)]
        return sum(sizes) / max(1, len(sizes))

    def feed(self, cmd, merges=True):
        """Runs `cmd` (an import) on the patients: the file as its last argument, or a pipe from
        `generate` as /dev/stdin (bytes counted on the way). Returns (exit code, input bytes,
        peak RSS MiB of cmd, seconds)."""
        started = time.monotonic()
        if not self.streamed:
            proc = subprocess.Popen([*map(str, cmd), str(self.path)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, self.path.stat().st_size, usage.ru_maxrss / 1024, time.monotonic() - started
        gen = subprocess.Popen(generate_cmd(self.shape, self.count, merges=self.merges if merges else None),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc = subprocess.Popen([*map(str, cmd), "/dev/stdin"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moved = relay(gen.stdout.fileno(), proc.stdin.fileno())
        proc.stdin.close()
        gen.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        gen.wait()
        if gen.returncode != 0 and proc.returncode == 0:
            raise SystemExit(f"generate failed ({gen.returncode})")
        return proc.returncode, moved, usage.ru_maxrss / 1024, time.monotonic() - started


def relay(src, dst):
    """Moves bytes from one pipe to another until the first ends (splice: no copy through
    Python); returns how many moved. Stops early if the reader goes."""
    moved = 0
    try:
        while True:
            n = os.splice(src, dst, 1 << 20) if hasattr(os, "splice") else os.write(dst, os.read(src, 1 << 20))
            if n == 0:
                return moved
            moved += n
    except BrokenPipeError:
        return moved


def run_import(data, store, label):
    """`pds-facade import` of a scale's patients into `store`: rate, input MB/s, peak RSS."""
    code, size, rss, seconds = data.feed([BIN, "import", *store], merges=True)
    if code != 0:
        raise SystemExit(f"{label}: import failed ({code})")
    r = {"import_s": seconds, "import_per_s": data.count / seconds, "input_bytes": size,
         "import_mb_per_s": size / 1e6 / seconds, "import_peak_rss_mib": rss,
         "streamed": data.streamed}
    log(f"{label}: imported {data.count} in {seconds:.1f} s ({r['import_per_s']:.0f}/s, "
        f"{r['import_mb_per_s']:.1f} MB/s, peak RSS {rss:.0f} MiB{', streamed' if data.streamed else ''})")
    return r


def ids_files(data, work, limit=1_000_000, superseded=()):
    """An even sample of at most about `limit` NHS numbers (for GET), and the first 64 patients
    that are not superseded by a merge (for PATCH: each connection changes its own)."""
    ids = [m.group(1) for m in map(ID_AT_LINE_START.match, data.sample(limit)) if m]
    every = Path(work) / f"ids-{data.shape}.txt"
    every.write_text("\n".join(ids) + "\n")
    skip, first = set(superseded), []
    lines = data.lines()
    try:
        for line in lines:
            m = ID_AT_LINE_START.match(line)
            if m and m.group(1) not in skip:
                first.append(m.group(1))
                if len(first) == max(CONNECTIONS):
                    break
    finally:
        lines.close()
    path = Path(work) / f"patch-ids-{data.shape}.txt"
    path.write_text("\n".join(first) + "\n")
    return every, path


VOWEL_SWAP = {"a": "e", "e": "a", "i": "y", "o": "a", "u": "o", "y": "i"}


def misspelt(name):
    """One letter wrong (a vowel after the first letter), as a fuzzy search is typed."""
    for k in range(1, len(name)):
        if name[k] in VOWEL_SWAP:
            return name[:k] + VOWEL_SWAP[name[k]] + name[k + 1:]
    return name[:-1] + name[-1] * 2


def search_sample(data, work, limit=1000):
    """(family, birth date) of an even sample of the patients, and one file of queries per
    search shape made of the same sample (parameters as src/domain/search.rs takes them)."""
    sample, queries = [], {shape: [] for shape in SEARCH_SHAPES}
    for line in data.sample(limit):
        doc = json.loads(line)
        names = doc.get("name") or []
        usual = next((n for n in names if n.get("use") == "usual"), names[0] if names else None)
        birth = doc.get("birthDate", "")
        if not usual or len(birth) != 10:
            continue
        family, given, gender = usual["family"], (usual.get("given") or [None])[0], doc.get("gender")
        home = next((a for a in doc.get("address", []) if a.get("use") == "home" and a.get("postalCode")), None)
        sample.append((family, birth))
        f = quote(family)
        queries["family_birthdate"].append(f"family={f}&birthdate=eq{birth}")
        if given and gender:
            queries["family_given_gender_birthdate"].append(
                f"family={f}&given={quote(given)}&gender={gender}&birthdate=eq{birth}")
        if home:
            year = birth[:4]
            queries["family_postcode"].append(f"family={f}&address-postalcode={quote(home['postalCode'])}"
                                              f"&birthdate=ge{year}-01-01&birthdate=le{year}-12-31")
        if len(family) >= 3:
            queries["wildcard_birthdate"].append(f"family={quote(family[:3])}%2A&birthdate=eq{birth}")
        if given:
            queries["fuzzy"].append(f"_fuzzy-match=true&family={quote(misspelt(family))}"
                                    f"&given={quote(given)}&birthdate=eq{birth}")
    files = {}
    for shape, lines in queries.items():
        files[shape] = Path(work) / f"searches-{data.shape}-{shape}.txt"
        files[shape].write_text("".join(q + "\n" for q in lines))
    return sample, files


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    fs = subprocess.run(["df", "-T", str(ROOT)], capture_output=True, text=True).stdout.splitlines()[-1].split()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem / 1024 / 1024, 1),
            "filesystem": f"{fs[1]} on {fs[0]}", "kernel": platform.release(),
            "wrk": wrk_version.strip(),
            "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()}


# ---------------------------------------------------------------- the run


def measure_node(store, r, args, work, files, run_base, label, pairs=(), shapes=False, trace=False):
    """GET, durable PATCH and search against one pds-facade node on `store` (--db/--store),
    after merging the superseded records; the server's CPU time and writes per request."""
    every, first, searches = files["ids"], files["patch_ids"], files["searches"]
    env = dict(os.environ, RUST_LOG="info")
    server = Server([BIN, "serve", *store, "--listen", "127.0.0.1:0"], env=env)
    pid = server.proc.pid
    try:
        r["startup_s"] = server.startup_s
        token = subprocess.run([BIN, "token", "--role", "back-office", "--sub", "bench", *store],
                               capture_output=True, text=True, check=True).stdout.strip()
        r["merges"] = merge_all(server.url, token, list(pairs))
        if pairs:
            m = r["merges"]
            log(label, f"merged {m['pairs']} superseded records in {m['seconds']:.1f} s ({m['threads']} connections)")
        r["get"] = get_run(server.url, every, args.seconds, pid)
        log(label, "GET", {c: round(v["ok_per_s"]) for c, v in r["get"].items()})
        r["patch"] = patch_run(server.url, first, token, args.seconds, run_base, pid)
        log(label, "PATCH", {c: round(v["ok_per_s"]) for c, v in r["patch"].items()})
        if trace:
            r["strace"] = strace_patch(server.url, pid, first, token, max(1, min(args.seconds, 3)),
                                       run_base + 4, work)
            log(label, "strace", {k: v for k, v in r["strace"].items() if k != "calls"})
        r["search"] = search_run(server.url, searches, args.seconds)
        log(label, "search", {c: round(v["ok_per_s"]) for c, v in r["search"].items()})
        if shapes:
            # family + birthdate is the search just measured: its 16-connection run is the shape's
            r["search_shapes"] = search_shapes_run(server.url, files["shapes"], args.seconds,
                                                   measured_already={"family_birthdate": r["search"][16]})
            log(label, "search shapes", {k: round(v["ok_per_s"]) for k, v in r["search_shapes"].items()})
        r["rss_mib"], r["peak_rss_mib"] = server.memory_mib()
    finally:
        server.stop()


def prepare(data, work):
    """The ids and query files of a scale's patients."""
    sample, shape_files = search_sample(data, work)
    every, first = ids_files(data, work, superseded=[s for s, _ in data.pairs()])
    return sample, {"ids": every, "patch_ids": first, "searches": shape_files["family_birthdate"],
                    "shapes": shape_files}


def disk_room(data, work, per_input_byte):
    """Whether a store's copy of a streamed scale fits the free disk (and why not)."""
    if not data.streamed:
        return True, ""
    need = data.count * data.mean_bytes() * per_input_byte + 2 * 2**30
    free = shutil.disk_usage(work).free
    if free >= need:
        return True, ""
    return False, f"{need / 2**30:,.0f} GiB needed, {free / 2**30:,.0f} GiB free"


def run_scale(count, args, work, pg, cache, run_base):
    log(f"--- {count} {args.shape} patients")
    data = Data(args.shape, count, cache, work)
    fits, why = disk_room(data, work, REDB_BYTES_PER_INPUT_BYTE[data.shape])
    if not fits:
        raise SystemExit(f"not enough disk for the redb database of {count} {args.shape} patients ({why})")
    db = Path(work) / f"pds-{count}.redb"
    r = {"patients": count, "shape": args.shape, **run_import(data, ["--db", db], "redb")}
    r["db_bytes"] = db.stat().st_size
    log(f"redb file {r['db_bytes'] / 2**20:.0f} MiB")
    sample, files = prepare(data, work)  # after the import: a streamed scale's merges are written by then
    pairs = data.pairs()
    measure_node(["--db", db], r, args, work, files, run_base, "redb", pairs, shapes=True, trace=True)
    db.unlink()

    fits, why = disk_room(data, work, PG_BYTES_PER_INPUT_BYTE[data.shape])
    if not fits:
        log(f"PostgreSQL skipped at {count}: not enough disk ({why})")
        r["postgres_skipped"] = f"disk: {why}"
        return r
    # the same node on PostgreSQL (its own database in the same cluster, over loopback TCP)
    pg.create_database("pds")
    store = ["--store", pg.url("pds")]
    on_pg = run_import(data, store, "on PostgreSQL")
    on_pg["db_bytes"] = pg.database_bytes("pds")
    log(f"on PostgreSQL: {on_pg['db_bytes'] / 2**20:.0f} MiB")
    measure_node(store, on_pg, args, work, files, run_base + 5, "on PostgreSQL", pairs)
    r["on_postgres"] = on_pg
    pg.psql("DROP DATABASE pds")

    log("PostgreSQL: loading")
    started = time.monotonic()
    lines = data.lines()
    try:
        pg.load(lines)
    finally:
        lines.close()
    r["postgres_load_s"] = time.monotonic() - started
    pg.load_queries(sample)
    r["postgres_get"] = {c: pg.pgbench_read("get", c, args.seconds, work, count) for c in CONNECTIONS}
    log("pgbench GET", {c: round(v["ok_per_s"]) for c, v in r["postgres_get"].items()})
    r["postgres_search"] = {c: pg.pgbench_read("search", c, args.seconds, work, count) for c in CONNECTIONS}
    log("pgbench search", {c: round(v["ok_per_s"]) for c, v in r["postgres_search"].items()})
    r["postgres"] = {c: pg.pgbench(c, args.seconds, work) for c in CONNECTIONS}
    log("pgbench", {c: round(v["ok_per_s"]) for c, v in r["postgres"].items()})
    r["postgres_same_writes"] = {c: pg.pgbench(c, args.seconds, work, "same_writes") for c in CONNECTIONS}
    log("pgbench, same writes", {c: round(v["ok_per_s"]) for c, v in r["postgres_same_writes"].items()})
    return r


def compare_uniform(count, args, work, cache, run_base):
    """The same count of uniform patients in a second redb database, measured with the same
    search and PATCH scripts, for the national-vs-uniform table."""
    log(f"--- {count} uniform patients, to compare")
    data = Data("uniform", count, cache, work)
    fits, why = disk_room(data, work, REDB_BYTES_PER_INPUT_BYTE[data.shape])
    if not fits:
        log(f"national vs uniform skipped: not enough disk ({why})")
        return None
    db = Path(work) / f"pds-uniform-{count}.redb"
    r = {"patients": count, "shape": "uniform", **run_import(data, ["--db", db], "uniform redb")}
    r["db_bytes"] = db.stat().st_size
    _, files = prepare(data, work)
    server = Server([BIN, "serve", "--db", db, "--listen", "127.0.0.1:0"], env=dict(os.environ, RUST_LOG="info"))
    try:
        token = subprocess.run([BIN, "token", "--role", "back-office", "--sub", "bench", "--db", db],
                               capture_output=True, text=True, check=True).stdout.strip()
        r["patch"] = patch_run(server.url, files["patch_ids"], token, args.seconds, run_base, server.proc.pid)
        log("uniform PATCH", {c: round(v["ok_per_s"]) for c, v in r["patch"].items()})
        r["search_shapes"] = search_shapes_run(server.url, files["shapes"], args.seconds)
        log("uniform search shapes", {k: round(v["ok_per_s"]) for k, v in r["search_shapes"].items()})
    finally:
        server.stop()
    db.unlink()
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="2 k patients, 1 s per measurement")
    p.add_argument("--with-10m", action="store_true", help="add a 10 M patient scale")
    p.add_argument("--seconds", type=int, help="seconds per measurement (default 10; smoke 1)")
    p.add_argument("--scales", help="comma-separated patient counts (overrides the defaults)")
    p.add_argument("--out", help="output directory (default bench/results; smoke: target/bench-smoke)")
    p.add_argument("--update-benchmarks", action="store_true",
                   help="replace the generated section of BENCHMARKS.md with this run's report")
    p.add_argument("--shape", choices=["national", "uniform"], default="national",
                   help="the generated patients: national (PDS-rich records, England-shaped; default) or uniform")
    p.add_argument("--compare-uniform", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure 1 M (or the largest scale's count of) uniform patients (search shapes, PATCH) "
                        "beside the national ones (default: on, off with --smoke)")
    args = p.parse_args()
    args.seconds = args.seconds or (1 if args.smoke else 10)
    if args.compare_uniform is None:
        args.compare_uniform = not args.smoke
    args.compare_uniform = args.compare_uniform and args.shape == "national"
    if args.scales:
        scales = [int(s) for s in args.scales.split(",")]
    elif args.smoke:
        scales = [2000]
    else:
        scales = [10_000, 1_000_000] + ([10_000_000] if args.with_10m else [])
    out = Path(args.out or (ROOT / ("target/bench-smoke" if args.smoke else "bench/results")))
    out.mkdir(parents=True, exist_ok=True)
    cache = ROOT / "target" / "bench-data"
    results = {"machine": machine(), "seconds": args.seconds, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    log("machine", results["machine"])
    with tempfile.TemporaryDirectory(prefix="pds-bench-") as work:
        os.chmod(work, 0o755)
        results["fsync_per_s"] = fsync_floor(work, min(args.seconds, 5))
        log(f"fsync floor {results['fsync_per_s']:.0f}/s")
        # the ceiling answers with a real record's bytes, as pds-facade sends it
        sample_db = Path(work) / "sample.redb"
        sample = Data(args.shape, scales[0], cache, work)
        if sample.feed([BIN, "import", "--db", sample_db], merges=False)[0] != 0:
            raise SystemExit("importing the ceiling's sample failed")
        server = Server([BIN, "serve", "--db", sample_db, "--listen", "127.0.0.1:0"])
        every, _ = ids_files(sample, work)
        first_id = every.read_text().split()[0]
        body = subprocess.run(["curl", "-s", "-H", "X-Request-ID: 6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
                               f"{server.url}/Patient/{first_id}"], capture_output=True, check=True).stdout
        server.stop()
        sample_db.unlink()
        (Path(work) / "body.json").write_bytes(body)
        ceiling = Server([CEILING, Path(work) / "body.json"])
        try:
            results["ceiling"] = get_run(ceiling.url, every, args.seconds)
        finally:
            ceiling.stop()
        log("ceiling", {c: round(v["ok_per_s"]) for c, v in results["ceiling"].items()})
        pg = Postgres(work)
        results["postgres_version"] = pg.version
        try:
            # X-Request-IDs must not repeat across runs on one database: a run number per wrk run
            run_base = int(time.time()) % 100_000 * 100
            results["scales"] = []
            for i, n in enumerate(scales):
                results["scales"].append(run_scale(n, args, work, pg, cache, run_base + 10 * i))
                # what is measured so far survives a run that fails or is stopped later
                (out / "results.partial.json").write_text(json.dumps(results, indent=1))
        finally:
            pg.stop()
        results["shape"] = args.shape
        if args.compare_uniform:
            # the skew target is at 1 M: compare there when the run has it
            at = 1_000_000 if 1_000_000 in scales else max(scales)
            results["compare"] = compare_uniform(at, args, work, cache, run_base + 10 * len(scales))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.partial.json").unlink(missing_ok=True)
    report = render(results)
    (out / "report.md").write_text(report)
    (out / "chart.svg").write_text(chart(results))
    if args.update_benchmarks:
        update_benchmarks(report)
    print(report)


# ---------------------------------------------------------------- report


def fmt(n):
    return f"{n:,.0f}"


SKIPPED = "skipped: disk"


def render(res):
    m = res["machine"]
    shape = res.get("shape", "uniform")
    lines = [f"Run {res['when']}: {m['cpus']} × {m['cpu']}, {m['memory_gib']} GiB RAM, "
             f"{m['filesystem']}, Linux {m['kernel']}; {m['rustc']}; {m['wrk']}; "
             f"PostgreSQL {res['postgres_version']}. Load generator on the same cores; "
             f"{res['seconds']} s per measurement. Patients: `generate --shape {shape}` (seed {SEED})"
             + (", streamed into import from 5 M on" if any(s.get("streamed") for s in res["scales"]) else "")
             + ".", ""]
    lines += ["**GET /Patient/{id}** (random ids; wrk) — pds-facade vs the bare-axum ceiling", "",
              "| patients | connections | pds-facade req/s | p50 ms | p99 ms | ceiling req/s | ceiling p99 ms | share of ceiling |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        for c in CONNECTIONS:
            g, k = pick(s["get"], c), pick(res["ceiling"], c)
            lines.append(f"| {fmt(s['patients'])} | {c} | {fmt(g['ok_per_s'])} | {g['p50_ms']:.2f} | {g['p99_ms']:.2f} "
                         f"| {fmt(k['ok_per_s'])} | {k['p99_ms']:.2f} | {100 * g['ok_per_s'] / k['ok_per_s']:.0f} % |")
    lines += ["", f"**Durable PATCH** (each connection updates its own patient; every 200 is fsync-durable) — "
                  f"pds-facade vs PostgreSQL (pgbench, one jsonb UPDATE per transaction, fsync on; and, last column, the same "
                  f"UPDATE with the rows pds-facade also writes per change: history version, audit entry, saved response). "
                  f"Raw fsync floor of the disk: **{fmt(res['fsync_per_s'])} commits/s** (one writer, 4 KiB + fdatasync).", "",
              "| patients | connections | pds-facade changes/s | p50 ms | p99 ms | PostgreSQL tx/s | p50 ms | p99 ms | pds-facade ÷ PostgreSQL | ÷ 1-connection rate | PostgreSQL, same writes, tx/s |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        single = pick(s["patch"], 1)["ok_per_s"]
        for c in CONNECTIONS:
            p = pick(s["patch"], c)
            row = f"| {fmt(s['patients'])} | {c} | {fmt(p['ok_per_s'])} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} "
            if "postgres" in s:
                q, w = pick(s["postgres"], c), pick(s["postgres_same_writes"], c)
                row += (f"| {fmt(q['ok_per_s'])} | {q['p50_ms']:.2f} | {q['p99_ms']:.2f} "
                        f"| {p['ok_per_s'] / q['ok_per_s']:.2f}× | {p['ok_per_s'] / single:.1f}× | {fmt(w['ok_per_s'])} |")
            else:
                row += f"| {SKIPPED} | | | | {p['ok_per_s'] / single:.1f}× | {SKIPPED} |"
            lines.append(row)
    lines += ["", "**pds-facade on PostgreSQL** (`serve --store postgres://…`: the same node on a database of its own in the "
                  "same PostgreSQL cluster, over loopback TCP, pool of 16 connections) beside pds-facade on redb and plain "
                  "PostgreSQL (pgbench: a document by key; the exact family + birth-date search through an expression index; "
                  "the jsonb UPDATE with the rows pds-facade writes). Requests/s.", "",
              "| patients | connections | GET redb | GET on PostgreSQL | GET plain PostgreSQL | PATCH redb | PATCH on PostgreSQL "
              "| PATCH plain PostgreSQL | search redb | search on PostgreSQL | search plain PostgreSQL |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        o = s.get("on_postgres")
        for c in CONNECTIONS:
            cell = lambda d, key: fmt(pick(d[key], c)["ok_per_s"]) if d and key in d else SKIPPED  # noqa: E731
            cells = [cell(s, "get"), cell(o, "get"), cell(s, "postgres_get"),
                     cell(s, "patch"), cell(o, "patch"), cell(s, "postgres_same_writes"),
                     cell(s, "search"), cell(o, "search"), cell(s, "postgres_search")]
            lines.append(f"| {fmt(s['patients'])} | {c} | " + " | ".join(cells) + " |")
    lines += ["", "| patients | import redb patients/s | import on PostgreSQL patients/s | plain PostgreSQL COPY + ANALYZE s "
                  "| redb file MiB | PostgreSQL database MiB | RSS on PostgreSQL MiB (peak) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        o = s.get("on_postgres")
        if o:
            lines.append(f"| {fmt(s['patients'])} | {fmt(s['import_per_s'])} | {fmt(o['import_per_s'])} | {s['postgres_load_s']:.1f} "
                         f"| {s['db_bytes'] / 2**20:,.0f} | {o['db_bytes'] / 2**20:,.0f} | {o['rss_mib']:,.0f} ({o['peak_rss_mib']:,.0f}) |")
        else:
            lines.append(f"| {fmt(s['patients'])} | {fmt(s['import_per_s'])} | {SKIPPED} | {SKIPPED} "
                         f"| {s['db_bytes'] / 2**20:,.0f} | {SKIPPED} | {SKIPPED} |")
    lines += ["", "**Scale**", "",
              "| patients | import s | import patients/s | database MiB | start-up s | RSS MiB (peak) | GET 64 vs first scale | PATCH 64 vs first scale |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = res["scales"][0]
    for s in res["scales"]:
        g = pick(s["get"], 64)["ok_per_s"] / pick(base["get"], 64)["ok_per_s"]
        p = pick(s["patch"], 64)["ok_per_s"] / pick(base["patch"], 64)["ok_per_s"]
        lines.append(f"| {fmt(s['patients'])} | {s['import_s']:.1f} | {fmt(s['import_per_s'])} | {s['db_bytes'] / 2**20:,.0f} "
                     f"| {s['startup_s']:.3f} | {s['rss_mib']:,.0f} ({s['peak_rss_mib']:,.0f}) | {100 * g:.0f} % | {100 * p:.0f} % |")
    lines += render_import(res) + render_merges(res) + render_shapes(res) + render_costs(res) + render_compare(res)
    return "\n".join(lines) + "\n"


def mib(x):
    return f"{x:,.0f}"


def render_import(res):
    """Import rate, input rate and the import process's peak RSS, per scale and store."""
    out = ["", "**Import** (`pds-facade import`; input = the NDJSON read, from the file or — streamed — the pipe "
               "from `generate`; peak RSS of the import process)", "",
           "| patients | input | input MB | redb patients/s | redb MB/s | redb import peak RSS MiB "
           "| on PostgreSQL patients/s | on PostgreSQL MB/s | on PostgreSQL import peak RSS MiB |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        o = s.get("on_postgres")
        pg = (f"{fmt(o['import_per_s'])} | {o['import_mb_per_s']:.1f} | {mib(o['import_peak_rss_mib'])}" if o
              else f"{SKIPPED} | {SKIPPED} | {SKIPPED}")
        out.append(f"| {fmt(s['patients'])} | {'pipe' if s.get('streamed') else 'file'} | {s['input_bytes'] / 1e6:,.0f} "
                   f"| {fmt(s['import_per_s'])} | {s['import_mb_per_s']:.1f} | {mib(s['import_peak_rss_mib'])} | {pg} |")
    return out


def render_merges(res):
    """The superseded duplicates merged after each import, before anything was measured."""
    rows = [(s, node, d["merges"]) for s in res["scales"]
            for node, d in (("redb", s), ("on PostgreSQL", s.get("on_postgres") or {})) if d.get("merges")]
    if not any(m["pairs"] for _, _, m in rows):
        return []
    out = ["", f"**Merges after import** (`POST /Patient/$merge` as the back office, one per superseded duplicate "
               f"that `generate --merges-out` listed; {MERGE_THREADS} connections at most)", "",
           "| patients | node | merges | connections | seconds | merges/s |", "|---:|---|---:|---:|---:|---:|"]
    for s, node, m in rows:
        rate = m["pairs"] / m["seconds"] if m["seconds"] else 0
        out.append(f"| {fmt(s['patients'])} | {node} | {fmt(m['pairs'])} | {m['threads']} | {m['seconds']:.2f} | {fmt(rate)} |")
    return out


def render_shapes(res):
    out = ["", "**Search shapes** (redb, 16 connections; each shape a file of queries built from the same even "
               "sample of ~1,000 loaded patients; `family + postcode` also needs a birth date: the whole birth year)", "",
           "| patients | search | req/s | p50 ms | p99 ms |", "|---:|---|---:|---:|---:|"]
    for s in res["scales"]:
        for shape, title in SEARCH_SHAPES.items():
            if shape in s.get("search_shapes", {}):
                r = s["search_shapes"][shape]
                out.append(f"| {fmt(s['patients'])} | {title} | {fmt(r['ok_per_s'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    return out


def render_costs(res):
    """Server CPU and writes per request, from /proc/PID/stat and /proc/PID/io around each run."""
    out = ["", "**Server cost per request** (the server process's utime + stime and /proc/PID/io around each wrk run, "
               "divided by the successful requests. wchar: bytes passed to write calls, including the request log "
               "line on stderr; to disk: write_bytes, bytes sent to storage; pages: wchar ÷ 4 KiB. On PostgreSQL the "
               "database's own CPU and writes are not counted)", "",
           "| patients | node | connections | CPU ms per change | KiB written per change (wchar) | KiB to disk per change "
           "| 4-KiB pages per change | CPU µs per GET |",
           "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        for node, d in (("redb", s), ("on PostgreSQL", s.get("on_postgres"))):
            if not d or "server_cpu_s" not in pick(d["patch"], 1):
                continue
            for c in CONNECTIONS:
                p, g = pick(d["patch"], c), pick(d["get"], c)
                n, gets = max(1, ok_count(p)), max(1, ok_count(g))
                out.append(f"| {fmt(s['patients'])} | {node} | {c} | {1000 * p['server_cpu_s'] / n:.2f} "
                           f"| {p['server_wchar'] / 1024 / n:.1f} | {p['server_write_bytes'] / 1024 / n:.1f} "
                           f"| {p['server_wchar'] / 4096 / n:.1f} | {1e6 * g['server_cpu_s'] / gets:.0f} |")
    traced = [(s, s["strace"]) for s in res["scales"] if "strace" in s]
    if traced:
        out += ["", "**Syscalls per change** (redb; a separate short 1-connection PATCH run under `strace -c -f`, "
                    "so the figures above are not slowed by it)", "",
                "| patients | changes traced | pwrite per change | fdatasync per change | fsync per change | write per change |",
                "|---:|---:|---:|---:|---:|---:|"]
        for s, t in traced:
            if "skipped" in t:
                out.append(f"| {fmt(s['patients'])} | skipped: {t['skipped']} | | | | |")
            else:
                out.append(f"| {fmt(s['patients'])} | {fmt(t['changes'])} | {t['pwrite']:.1f} | {t['fdatasync']:.2f} "
                           f"| {t['fsync']:.2f} | {t['write']:.1f} |")
    return out


def render_compare(res):
    """National vs uniform patients at 1 M (or the largest scale): the same scripts on both."""
    u = res.get("compare")
    if not u:
        return []
    n = next(s for s in res["scales"] if s["patients"] == u["patients"])
    out = ["", f"**national vs uniform** ({fmt(u['patients'])} patients each, redb; the same search and PATCH "
               f"scripts; uniform: `generate --shape uniform`, {u['input_bytes'] / u['patients']:,.0f} B a record, "
               f"{u['db_bytes'] / 2**20:,.0f} MiB database; national: {n['input_bytes'] / n['patients']:,.0f} B a "
               f"record, {n['db_bytes'] / 2**20:,.0f} MiB)", "",
           "| measure | national | uniform | national ÷ uniform |", "|---|---:|---:|---:|"]
    for shape, title in SEARCH_SHAPES.items():
        a, b = n.get("search_shapes", {}).get(shape), u["search_shapes"].get(shape)
        if a and b:
            out.append(f"| search p99 ms, {title} (16 connections) | {a['p99_ms']:.2f} | {b['p99_ms']:.2f} "
                       f"| {a['p99_ms'] / b['p99_ms']:.2f} |")
    for c in CONNECTIONS:
        a, b = pick(n["patch"], c)["ok_per_s"], pick(u["patch"], c)["ok_per_s"]
        out.append(f"| PATCH changes/s, {c} connection{'s' if c > 1 else ''} | {fmt(a)} | {fmt(b)} | {a / b:.2f} |")
    out.append(f"| import patients/s | {fmt(n['import_per_s'])} | {fmt(u['import_per_s'])} "
               f"| {n['import_per_s'] / u['import_per_s']:.2f} |")
    return out


def pick(d, c):
    return d[c] if c in d else d[str(c)]


def chart(res):
    """Two panels of grouped bars (GET and PATCH per connection count), as plain SVG."""
    series_get = [("ceiling (bare axum)", "#9e9e9e", res["ceiling"])] + [
        (f"pds-facade, {fmt(s['patients'])}", color, s["get"]) for s, color in zip(res["scales"], PALETTE)]
    series_patch = [(f"pds-facade, {fmt(s['patients'])}", color, s["patch"]) for s, color in zip(res["scales"], PALETTE)] + [
        (f"PostgreSQL, {fmt(s['patients'])}", color, s["postgres"])
        for s, color in zip(res["scales"], PG_PALETTE) if "postgres" in s] + [
        (f"PostgreSQL same writes, {fmt(s['patients'])}", color, s["postgres_same_writes"])
        for s, color in zip(res["scales"], PG_SAME_PALETTE) if "postgres_same_writes" in s]
    width, height = 980, 440
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    svg += panel(20, "GET /Patient/{id} — requests/s", series_get, None)
    svg += panel(500, "Durable PATCH — changes/s", series_patch, res["fsync_per_s"])
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


PALETTE = ["#1565c0", "#2e7d32", "#6a1b9a"]
PG_PALETTE = ["#ef6c00", "#c62828", "#795548"]
PG_SAME_PALETTE = ["#ffb74d", "#ef9a9a", "#bcaaa4"]


def panel(x0, title, series, floor):
    top, plot_h, plot_w = 40, 260, 440
    peak = max([pick(d, c)["ok_per_s"] for _, _, d in series for c in CONNECTIONS] + [floor or 0]) * 1.1
    out = [f'<text x="{x0}" y="22" font-size="14" font-weight="bold">{title}</text>',
           f'<line x1="{x0 + 40}" y1="{top + plot_h}" x2="{x0 + 40 + plot_w}" y2="{top + plot_h}" stroke="black"/>']
    for i in range(5):
        v = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<text x="{x0 + 36}" y="{y + 4:.0f}" text-anchor="end" fill="#555">{v / 1000:.0f}k</text>')
        out.append(f'<line x1="{x0 + 40}" y1="{y:.0f}" x2="{x0 + 40 + plot_w}" y2="{y:.0f}" stroke="#eee"/>')
    group_w = plot_w / len(CONNECTIONS)
    bar_w = (group_w - 20) / len(series)
    for gi, c in enumerate(CONNECTIONS):
        gx = x0 + 40 + gi * group_w + 10
        for si, (_, color, d) in enumerate(series):
            v = pick(d, c)["ok_per_s"]
            h = plot_h * v / peak
            out.append(f'<rect x="{gx + si * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                       f'height="{h:.1f}" fill="{color}"><title>{v:,.0f}/s</title></rect>')
        out.append(f'<text x="{gx + (group_w - 20) / 2:.0f}" y="{top + plot_h + 16}" text-anchor="middle">'
                   f'{c} connection{"s" if c > 1 else ""}</text>')
    if floor:
        y = top + plot_h - plot_h * floor / peak
        out.append(f'<line x1="{x0 + 40}" y1="{y:.1f}" x2="{x0 + 40 + plot_w}" y2="{y:.1f}" stroke="black" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{x0 + 40 + plot_w}" y="{y - 4:.1f}" text-anchor="end">fsync floor {floor:,.0f}/s</text>')
    for si, (name, color, _) in enumerate(series):
        ly = top + plot_h + 34 + 16 * si
        out.append(f'<rect x="{x0 + 40}" y="{ly - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{x0 + 58}" y="{ly}">{name}</text>')
    return out


def update_benchmarks(report):
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    begin, end = "<!-- bench/run: begin -->", "<!-- bench/run: end -->"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{report}{end}{tail}")


if __name__ == "__main__":
    main()
