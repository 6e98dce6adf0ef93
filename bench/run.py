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

Writes results.json, report.md and chart.svg to the output directory; with --update-benchmarks
the report also replaces the generated section of BENCHMARKS.md. Asserts nothing about speed.
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "pds-facade"
CEILING = ROOT / "target" / "release" / "examples" / "ceiling"
CONNECTIONS = (1, 16, 64)
SEED = 20261127
ID_AT_LINE_START = re.compile(r'^\{"resourceType":"Patient","id":"(\d{10})"')


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


def get_run(url, ids_file, seconds):
    wrk("get.lua", url, 16, 1, [ids_file])  # warm-up
    return {c: wrk("get.lua", url, c, seconds, [ids_file]) for c in CONNECTIONS}


def search_run(url, queries_file, seconds):
    wrk("search.lua", url, 16, 1, [queries_file])  # warm-up
    return {c: wrk("search.lua", url, c, seconds, [queries_file]) for c in CONNECTIONS}


def patch_run(url, ids_file, token, seconds, run):
    results = {}
    for c in CONNECTIONS:
        run += 1
        results[c] = wrk("patch.lua", url, c, seconds, [ids_file, token, run], threads=c)
    return results


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

    def load(self, ndjson):
        """The same patients as jsonb rows: (k serial key, NHS number, version, document)."""
        self.psql("DROP TABLE IF EXISTS patients; CREATE TABLE patients (k bigserial PRIMARY KEY,"
                  " id bigint UNIQUE NOT NULL, version int NOT NULL DEFAULT 1, doc jsonb NOT NULL)")
        copy = subprocess.Popen(["psql", *self.conn(), "-qX", "-v", "ON_ERROR_STOP=1", "-c",
                                 "COPY patients (id, doc) FROM STDIN"],
                                stdin=subprocess.PIPE, text=True)
        with open(ndjson) as f:
            for line in f:
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


def dataset(count, cache):
    """Generated patients (deterministic), kept between runs."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"patients-{count}-{SEED}.ndjson"
    if not path.exists():
        log(f"generating {count} patients")
        tmp = path.with_suffix(".tmp")
        subprocess.run([BIN, "generate", "--count", str(count), "--seed", str(SEED),
                        "--out", tmp], check=True, stderr=subprocess.DEVNULL)
        tmp.rename(path)
    return path


def ids_files(ndjson, work, limit=1_000_000):
    """All (or an even sample of at most `limit`) NHS numbers, and the first 64 for PATCH."""
    ids = []
    with open(ndjson) as f:
        for line in f:
            m = ID_AT_LINE_START.match(line)
            if m:
                ids.append(m.group(1))
    step = max(1, len(ids) // limit)
    every = Path(work) / "ids.txt"
    every.write_text("\n".join(ids[::step]) + "\n")
    first = Path(work) / "patch-ids.txt"
    first.write_text("\n".join(ids[:max(CONNECTIONS)]) + "\n")
    return every, first


FAMILY_AND_BIRTH = re.compile(r'"family":"([^"]+)".*?"birthDate":"([0-9-]+)"')


def search_sample(ndjson, work, limit=1000):
    """(family, birth date) of an even sample of the patients, and the searches made of them."""
    lines = sum(1 for _ in open(ndjson))
    step = max(1, lines // limit)
    sample = []
    with open(ndjson) as f:
        for i, line in enumerate(f):
            if i % step == 0:
                m = FAMILY_AND_BIRTH.search(line)
                if m:
                    sample.append((m.group(1), m.group(2)))
    path = Path(work) / "searches.txt"
    from urllib.parse import quote
    path.write_text("".join(f"family={quote(f)}&birthdate=eq{b}\n" for f, b in sample))
    return sample, path


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


def measure_node(store, r, args, work, every, first, searches, run_base, label):
    """GET, durable PATCH and search against one pds-facade node on `store` (--db/--store)."""
    env = dict(os.environ, RUST_LOG="info")
    server = Server([BIN, "serve", *store, "--listen", "127.0.0.1:0"], env=env)
    try:
        r["startup_s"] = server.startup_s
        token = subprocess.run([BIN, "token", "--role", "back-office", "--sub", "bench", *store],
                               capture_output=True, text=True, check=True).stdout.strip()
        r["get"] = get_run(server.url, every, args.seconds)
        log(label, "GET", {c: round(v["ok_per_s"]) for c, v in r["get"].items()})
        r["patch"] = patch_run(server.url, first, token, args.seconds, run_base)
        log(label, "PATCH", {c: round(v["ok_per_s"]) for c, v in r["patch"].items()})
        r["search"] = search_run(server.url, searches, args.seconds)
        log(label, "search", {c: round(v["ok_per_s"]) for c, v in r["search"].items()})
        r["rss_mib"], r["peak_rss_mib"] = server.memory_mib()
    finally:
        server.stop()


def run_scale(count, args, work, pg, cache, run_base):
    log(f"--- {count} patients")
    data = dataset(count, cache)
    every, first = ids_files(data, work)
    sample, searches = search_sample(data, work)
    db = Path(work) / f"pds-{count}.redb"
    started = time.monotonic()
    subprocess.run([BIN, "import", "--db", db, data], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import_s = time.monotonic() - started
    r = {"patients": count, "import_s": import_s, "import_per_s": count / import_s,
         "db_bytes": db.stat().st_size}
    log(f"imported in {import_s:.1f} s ({r['import_per_s']:.0f}/s), {r['db_bytes'] / 2**20:.0f} MiB")
    measure_node(["--db", db], r, args, work, every, first, searches, run_base, "redb")
    db.unlink()

    # the same node on PostgreSQL (its own database in the same cluster, over loopback TCP)
    pg.create_database("pds")
    store = ["--store", pg.url("pds")]
    on_pg = {}
    started = time.monotonic()
    subprocess.run([BIN, "import", *store, data], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    on_pg["import_s"] = time.monotonic() - started
    on_pg["import_per_s"] = count / on_pg["import_s"]
    on_pg["db_bytes"] = pg.database_bytes("pds")
    log(f"on PostgreSQL: imported in {on_pg['import_s']:.1f} s ({on_pg['import_per_s']:.0f}/s), "
        f"{on_pg['db_bytes'] / 2**20:.0f} MiB")
    measure_node(store, on_pg, args, work, every, first, searches, run_base + 5, "on PostgreSQL")
    r["on_postgres"] = on_pg
    pg.psql("DROP DATABASE pds")

    log("PostgreSQL: loading")
    started = time.monotonic()
    pg.load(data)
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="2 k patients, 1 s per measurement")
    p.add_argument("--with-10m", action="store_true", help="add a 10 M patient scale")
    p.add_argument("--seconds", type=int, help="seconds per measurement (default 10; smoke 1)")
    p.add_argument("--scales", help="comma-separated patient counts (overrides the defaults)")
    p.add_argument("--out", help="output directory (default bench/results; smoke: target/bench-smoke)")
    p.add_argument("--update-benchmarks", action="store_true",
                   help="replace the generated section of BENCHMARKS.md with this run's report")
    args = p.parse_args()
    args.seconds = args.seconds or (1 if args.smoke else 10)
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
        sample = dataset(scales[0], cache)
        subprocess.run([BIN, "import", "--db", sample_db, sample], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
            results["scales"] = [run_scale(n, args, work, pg, cache, run_base + 10 * i)
                                 for i, n in enumerate(scales)]
        finally:
            pg.stop()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    report = render(results)
    (out / "report.md").write_text(report)
    (out / "chart.svg").write_text(chart(results))
    if args.update_benchmarks:
        update_benchmarks(report)
    print(report)


# ---------------------------------------------------------------- report


def fmt(n):
    return f"{n:,.0f}"


def render(res):
    m = res["machine"]
    lines = [f"Run {res['when']}: {m['cpus']} × {m['cpu']}, {m['memory_gib']} GiB RAM, "
             f"{m['filesystem']}, Linux {m['kernel']}; {m['rustc']}; {m['wrk']}; "
             f"PostgreSQL {res['postgres_version']}. Load generator on the same cores; "
             f"{res['seconds']} s per measurement.", ""]
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
            p, q, w = pick(s["patch"], c), pick(s["postgres"], c), pick(s["postgres_same_writes"], c)
            lines.append(f"| {fmt(s['patients'])} | {c} | {fmt(p['ok_per_s'])} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} "
                         f"| {fmt(q['ok_per_s'])} | {q['p50_ms']:.2f} | {q['p99_ms']:.2f} "
                         f"| {p['ok_per_s'] / q['ok_per_s']:.2f}× | {p['ok_per_s'] / single:.1f}× | {fmt(w['ok_per_s'])} |")
    lines += ["", "**pds-facade on PostgreSQL** (`serve --store postgres://…`: the same node on a database of its own in the "
                  "same PostgreSQL cluster, over loopback TCP, pool of 16 connections) beside pds-facade on redb and plain "
                  "PostgreSQL (pgbench: a document by key; the exact family + birth-date search through an expression index; "
                  "the jsonb UPDATE with the rows pds-facade writes). Requests/s.", "",
              "| patients | connections | GET redb | GET on PostgreSQL | GET plain PostgreSQL | PATCH redb | PATCH on PostgreSQL "
              "| PATCH plain PostgreSQL | search redb | search on PostgreSQL | search plain PostgreSQL |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        o = s["on_postgres"]
        for c in CONNECTIONS:
            cells = [pick(s["get"], c), pick(o["get"], c), pick(s["postgres_get"], c),
                     pick(s["patch"], c), pick(o["patch"], c), pick(s["postgres_same_writes"], c),
                     pick(s["search"], c), pick(o["search"], c), pick(s["postgres_search"], c)]
            lines.append(f"| {fmt(s['patients'])} | {c} | " + " | ".join(fmt(x["ok_per_s"]) for x in cells) + " |")
    lines += ["", "| patients | import redb patients/s | import on PostgreSQL patients/s | plain PostgreSQL COPY + ANALYZE s "
                  "| redb file MiB | PostgreSQL database MiB | RSS on PostgreSQL MiB (peak) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scales"]:
        o = s["on_postgres"]
        lines.append(f"| {fmt(s['patients'])} | {fmt(s['import_per_s'])} | {fmt(o['import_per_s'])} | {s['postgres_load_s']:.1f} "
                     f"| {s['db_bytes'] / 2**20:,.0f} | {o['db_bytes'] / 2**20:,.0f} | {o['rss_mib']:,.0f} ({o['peak_rss_mib']:,.0f}) |")
    lines += ["", "**Scale**", "",
              "| patients | import s | import patients/s | database MiB | start-up s | RSS MiB (peak) | GET 64 vs first scale | PATCH 64 vs first scale |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = res["scales"][0]
    for s in res["scales"]:
        g = pick(s["get"], 64)["ok_per_s"] / pick(base["get"], 64)["ok_per_s"]
        p = pick(s["patch"], 64)["ok_per_s"] / pick(base["patch"], 64)["ok_per_s"]
        lines.append(f"| {fmt(s['patients'])} | {s['import_s']:.1f} | {fmt(s['import_per_s'])} | {s['db_bytes'] / 2**20:,.0f} "
                     f"| {s['startup_s']:.3f} | {s['rss_mib']:,.0f} ({s['peak_rss_mib']:,.0f}) | {100 * g:.0f} % | {100 * p:.0f} % |")
    return "\n".join(lines) + "\n"


def pick(d, c):
    return d[c] if c in d else d[str(c)]


def chart(res):
    """Two panels of grouped bars (GET and PATCH per connection count), as plain SVG."""
    series_get = [("ceiling (bare axum)", "#9e9e9e", res["ceiling"])] + [
        (f"pds-facade, {fmt(s['patients'])}", color, s["get"]) for s, color in zip(res["scales"], PALETTE)]
    series_patch = [(f"pds-facade, {fmt(s['patients'])}", color, s["patch"]) for s, color in zip(res["scales"], PALETTE)] + [
        (f"PostgreSQL, {fmt(s['patients'])}", color, s["postgres"]) for s, color in zip(res["scales"], PG_PALETTE)] + [
        (f"PostgreSQL same writes, {fmt(s['patients'])}", color, s["postgres_same_writes"])
        for s, color in zip(res["scales"], PG_SAME_PALETTE)]
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
