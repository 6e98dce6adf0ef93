//! The `pds-facade` command: `serve`, `import`, `openapi`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use pds_facade::auth::{self, KeyConfig, KeySet};
use pds_facade::domain::{NhsNumber, Role, Schemas};
use pds_facade::env::{new_object_id, today};
use pds_facade::generate::Shape;
use pds_facade::http::{self, Settings};
use pds_facade::import::{self, FileReport};
use pds_facade::store::location::{Location, Opened, Options as StoreOptions};
use pds_facade::store::postgres::PgStore;
use pds_facade::store::{ExistingRecords, PatientStore};
use pds_facade::transfer;

#[derive(Parser)]
#[command(
    name = "pds-facade",
    version,
    about = "A PDS-compatible FHIR R4 Patient service over an embedded redb database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Load Patient resources from files: a Patient, a Bundle of Patients, or NDJSON.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Store records whose NHS number exists already as a new version of it
        /// (otherwise such a file is rejected).
        #[arg(long)]
        replace: bool,
        /// Files to load; each is loaded whole or not at all.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Records per write transaction (bigger: faster, more memory).
        #[arg(long, default_value_t = import::BATCH)]
        batch_size: usize,
    },
    /// Rebuild the search indexes from the stored records (or, with --check, only compare them).
    Reindex {
        #[command(flatten)]
        store: StoreArgs,
        /// Report differences between indexes and records instead of rebuilding.
        #[arg(long)]
        check: bool,
    },
    /// Bring a PostgreSQL store's schema up to date (serve does it too, at start-up), or
    /// rewrite an embedded database file of an older store format in the current one (the
    /// server reads older files as they are; this gives back the space they take). Stop the
    /// server first.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show the plan PostgreSQL makes for each index lookup of a search, e.g.
    /// `explain --store postgres://… 'family=Smith&birthdate=eq2010-10-22'` (as the back office
    /// would search; sequential scans ruled out where an index can serve).
    Explain {
        #[command(flatten)]
        store: StoreArgs,
        /// The search's query string, as after `/Patient?`.
        query: String,
    },
    /// Write the current version of every record as NDJSON, in NHS-number order (streams, in
    /// constant memory). Every record is written as stored, restricted ones unredacted: keep the
    /// file as safe as the database.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// The output file, readable by its owner only (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Copy a whole store into a new, empty one — every version, audit entry, merge and
    /// identity link, allocated NHS number and idempotency record — e.g.
    /// `copy --from redb:pds.redb --to postgres://pds@db/pds`. All or nothing: an interrupted
    /// copy leaves the target empty (run it again). Nothing may write to the source meanwhile.
    Copy {
        /// The store to copy (`redb:PATH` or `postgres://…`).
        #[arg(long, value_parser = parse_location)]
        from: Location,
        /// The new store (must hold nothing yet).
        #[arg(long, value_parser = parse_location)]
        to: Location,
    },
    /// Compare two stores entry by entry (e.g. a copy with its source); fails when they differ.
    Verify {
        #[arg(long, value_parser = parse_location)]
        from: Location,
        #[arg(long, value_parser = parse_location)]
        to: Location,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Write synthetic patients as NDJSON (deterministic for a seed; streams in constant memory).
    Generate {
        /// How many patients.
        #[arg(long)]
        count: u64,
        /// The same seed always gives the same patients.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// uniform: small records drawn evenly from short lists; national: records as rich as
        /// PDS's fullest, in an England-shaped population (households, postcodes, practices,
        /// Zipf family names, the age pyramid, restricted, deceased and superseded records).
        #[arg(long, value_enum, default_value_t = Shape::Uniform)]
        shape: Shape,
        /// Write only patients i with i % K == 0 (the same lines as in the full stream): a
        /// sample of the population of --count.
        #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        every: u64,
        /// National shape: also write `SOURCE TARGET` (NHS numbers), one line per superseded
        /// duplicate written, to this file — the merges that make the population consistent.
        #[arg(long, value_name = "FILE")]
        merges_out: Option<PathBuf>,
    },
    /// Mint a bearer token with the configured HS256 key (in sandbox mode: the development key
    /// kept beside the database, as `serve` resolves it with the same flags).
    Token {
        /// application-restricted, healthcare-worker, back-office, practice, pcse or patient.
        #[arg(long)]
        role: Role,
        /// The practice's ODS code (with --role practice), e.g. Y12345.
        #[arg(long)]
        ods: Option<String>,
        /// The patient's NHS number (with --role patient; required): the `nhs_number` claim.
        #[arg(long)]
        nhs_number: Option<String>,
        /// NHS login's vector of trust (with --role patient): the `vot` claim, whose level
        /// (P9, P5, P0) also picks the scope. Only P9 (P9.Cp.Cd, P9.Cp.Ck, P9.Cm) may do anything.
        #[arg(long)]
        vot: Option<String>,
        /// The token subject (who acts; recorded in the audit trail).
        #[arg(long, default_value = "local-user")]
        sub: String,
        /// How long the token is valid, e.g. 30m, 1h, 2days.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
        /// The store whose sandbox key signs the token.
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        keys: KeyConfig,
    },
}

/// Where the records are.
#[derive(clap::Args, Clone, Debug)]
struct StoreArgs {
    /// The embedded database file (created if missing).
    #[arg(long, default_value = "./pds.redb", env = "PDS_DB")]
    db: PathBuf,
    /// The store, when not the file of --db: `redb:PATH`, or `postgres://user@host/db` for
    /// PostgreSQL (the schema is migrated on start).
    #[arg(long, env = "PDS_STORE", value_parser = parse_location, hide_env_values = true)]
    store: Option<Location>,
    /// Memory for redb's page cache, in MiB (most of the server's memory beyond a few MiB;
    /// reads of uncached pages go to the operating system's file cache).
    #[arg(long, default_value_t = 1024, env = "PDS_CACHE_SIZE")]
    cache_size: usize,
    /// PostgreSQL connections this process keeps open.
    #[arg(long, default_value_t = 16, env = "PDS_POOL_SIZE")]
    pool_size: usize,
}

fn parse_location(s: &str) -> Result<Location, String> {
    s.parse()
}

impl StoreArgs {
    fn location(&self) -> Location {
        self.store
            .clone()
            .unwrap_or(Location::Redb(self.db.clone()))
    }

    fn options(&self) -> StoreOptions {
        StoreOptions {
            cache_bytes: self.cache_size.saturating_mul(1024 * 1024),
            pool_size: self.pool_size.max(1),
        }
    }

    /// Opens the store (creating a file, migrating a schema), or says why not.
    fn open(&self, runtime: &tokio::runtime::Runtime) -> Result<Opened, ExitCode> {
        report(runtime.block_on(Opened::open(&self.location(), self.options())))
    }

    /// Opens a store that exists, as it is (for commands that only read).
    fn open_existing(&self, runtime: &tokio::runtime::Runtime) -> Result<Opened, ExitCode> {
        report(runtime.block_on(Opened::open_existing(&self.location(), self.options())))
    }
}

/// An opened store, or the reason printed.
fn report(opened: Result<Opened, String>) -> Result<Opened, ExitCode> {
    opened.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:9000", env = "PDS_LISTEN")]
    listen: SocketAddr,
    /// Load the bundled demo patients first, if the database is empty.
    #[arg(long, env = "PDS_DEMO")]
    demo: bool,
    /// How long a change's X-Request-ID is remembered, so that a retry gets the original
    /// answer instead of being applied again (e.g. 24h, 30m).
    #[arg(long, default_value = "24h", env = "PDS_IDEMPOTENCY_WINDOW")]
    idempotency_window: humantime::Duration,
    /// Requests unanswered after this get 503 SERVICE_UNAVAILABLE with Retry-After (a change
    /// may still complete: retry with the same X-Request-ID).
    #[arg(long, default_value = "10s", env = "PDS_REQUEST_TIMEOUT")]
    request_timeout: humantime::Duration,
    /// A client that takes longer than this to send its request headers is disconnected; one
    /// that takes longer to send its body gets 408.
    #[arg(long, default_value = "10s", env = "PDS_CLIENT_TIMEOUT")]
    client_timeout: humantime::Duration,
    /// Requests per second per client (token subject, or address without a token), beyond
    /// which 429 TOO_MANY_REQUESTS; 0 turns it off. Default: off in sandbox mode, 50 otherwise.
    #[arg(long, env = "PDS_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// NHS numbers for new records come from this range, `FIRST-LAST` (10-digit numbers;
    /// numbers are never reused).
    #[arg(
        long,
        default_value = "9993000000-9993999999",
        value_parser = parse_range,
        env = "PDS_ALLOCATION_RANGE"
    )]
    allocation_range: (u64, u64),
    /// The public base URL of the FHIR API, used in search results' `fullUrl`
    /// (default: http://<listen address>/personal-demographics/FHIR/R4).
    #[arg(long, env = "PDS_BASE_URL")]
    base_url: Option<String>,
    /// Days a kind of case has from logging to its due date, `KIND=DAYS` (repeatable; in the
    /// environment comma-separated), e.g. `--case-due duplicate-nhs-number=49`; the others keep
    /// their defaults (duplicate and confused records 70, see GET /CodeSystem/case-kind).
    #[arg(
        long = "case-due",
        value_name = "KIND=DAYS",
        env = "PDS_CASE_DUE",
        value_delimiter = ','
    )]
    case_due: Vec<String>,
    /// Where bulk exports (`GET /Patient/$export`) write their files — unredacted records, in
    /// owner-only files. Default: `<db>.exports` beside a redb database; for PostgreSQL a
    /// directory of this process in the temporary directory. Job directories left there by a
    /// previous run are removed at start-up (jobs do not survive a restart).
    #[arg(long, env = "PDS_EXPORT_DIR")]
    export_dir: Option<PathBuf>,
    /// How long a finished bulk export and its file are kept (e.g. 24h, 30m).
    #[arg(long, default_value = "24h", env = "PDS_EXPORT_EXPIRY")]
    export_expiry: humantime::Duration,
    /// Log lines on standard error as `text` (for people) or `json` (one object a line, for log
    /// pipelines). Each request's lines carry its X-Request-ID and X-Correlation-ID; none
    /// carries personal data (routes are logged as templates, e.g. `/Patient/{id}`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PDS_LOG_FORMAT")]
    log_format: LogFormat,
    /// Serve Prometheus metrics at `/metrics` on this address (e.g. 127.0.0.1:9100): a listener
    /// of its own, so they are never exposed with the API by accident. Default: off.
    #[arg(long, env = "PDS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    keys: KeyConfig,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// mimalloc rather than the system allocator: JSON documents are many small allocations, and
/// glibc's malloc/free took a fifth of bulk-import time (profile in BENCHMARKS.md). Built
/// without transparent huge pages (`no_thp`): memory mimalloc hands back and takes again was
/// faulted in 2 MiB at a time, each zeroed whole by the kernel — a quarter of import's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A file-size limit (`ulimit -f`) must fail the write that crosses it, like a full disk —
    // answered 503 and retried — not kill the process in the middle of a commit (SIGXFSZ).
    #[cfg(unix)]
    // SAFETY: installing SIG_IGN, before any other thread exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Reindex { store, check } => reindex(&store, check),
        Command::Migrate { store } => migrate(&store),
        Command::Explain { store, query } => explain(&store, &query),
        Command::Export { store, out } => export(&store, out.as_deref()),
        Command::Copy { from, to } => copy(&from, &to),
        Command::Verify { from, to } => verify(&from, &to),
        Command::Generate {
            count,
            seed,
            out,
            shape,
            every,
            merges_out,
        } => match generate(
            count,
            seed,
            out.as_deref(),
            shape,
            every,
            merges_out.as_deref(),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            // `generate | head` closes the pipe early: that is not an error
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Token {
            role,
            ods,
            nhs_number,
            vot,
            sub,
            ttl,
            store,
            keys,
        } => match token_keys(&keys, &store).and_then(|k| match (role, nhs_number) {
            (Role::Patient, Some(_)) if ods.is_some() => {
                Err("--ods goes only with --role practice".into())
            }
            (Role::Patient, Some(n)) => k.mint_patient(
                &sub,
                ttl.into(),
                &n,
                vot.as_deref().unwrap_or(auth::P9_VECTORS_OF_TRUST[0]),
            ),
            (Role::Patient, None) => {
                Err("a patient token names its patient: add --nhs-number <NHS number>".into())
            }
            (_, Some(_)) => Err("--nhs-number goes only with --role patient".into()),
            (_, None) if vot.is_some() => Err("--vot goes only with --role patient".into()),
            (_, None) => k.mint_for(role, &sub, ttl.into(), ods.as_deref()),
        }) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Import {
            store,
            replace,
            files,
            batch_size,
        } => run_import(&store, &files, replace, batch_size),
        Command::Openapi => {
            print(&serde_json::to_string_pretty(&http::openapi::openapi_json()).expect("JSON"))
        }
    }
}

/// Writes `text` and a newline to standard output. `pds-facade openapi | head` closes the pipe
/// early: that is not an error.
fn print(text: &str) -> ExitCode {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The keys `token` signs with. In sandbox mode that is the development key of the store a
/// server runs on: for a database file that does not exist no server can accept the token, so
/// nothing is minted (and no stray key file is left behind).
fn token_keys(keys: &KeyConfig, store: &StoreArgs) -> Result<KeySet, String> {
    if !KeySet::is_sandbox_config(keys) {
        return KeySet::resolve_with(keys, || {
            Err("no development key outside sandbox mode".into())
        });
    }
    let location = store.location();
    let hint = "in sandbox mode tokens are signed with the development key of the database the \
                server runs on — give that database (start a server on it once with \
                `pds-facade serve`), or configure a signing key (--jwt-hs256-secret-file)";
    match &location {
        // not opened: the server that holds the file's lock may be running
        Location::Redb(db) => match pds_facade::store::location::redb_file_problem(db) {
            Some(what) => Err(format!("{location} {what}: {hint}")),
            None => KeySet::resolve(keys, db),
        },
        // the key lives in the database a server migrated: opened as it is, so that a token
        // for a database no server ever used does not change it (schema, key) as a side effect
        Location::Postgres(_) => {
            let runtime = runtime();
            let key = runtime.block_on(async {
                let opened = Opened::open_existing(&location, store.options())
                    .await
                    .map_err(|e| format!("{e}: {hint}"))?;
                opened.dev_key(&location).await
            })?;
            KeySet::resolve_with(keys, || Ok(key))
        }
    }
}

/// The runtime the service and the commands run their store calls on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn serve(args: ServeArgs) -> ExitCode {
    let ServeArgs {
        store: store_args,
        listen,
        demo,
        idempotency_window,
        request_timeout,
        client_timeout,
        rate_limit,
        allocation_range,
        base_url,
        case_due,
        export_dir,
        export_expiry,
        log_format,
        metrics_listen,
        keys: key_config,
    } = args;
    let case_due = match pds_facade::domain::case::DueDays::with(&case_due) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --case-due: {e}");
            return ExitCode::FAILURE;
        }
    };
    let key_config = &key_config;
    let (idempotency_window, request_timeout): (std::time::Duration, std::time::Duration) =
        (idempotency_window.into(), request_timeout.into());
    // request threads hand log lines to a writer thread instead of each taking stderr's lock
    // and making a write call (a sixth of GET throughput); it waits rather than drops when
    // full, and the guard flushes it when the server stops
    let (log_writer, _flush_log_on_exit) =
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("log-writer")
            .finish(std::io::stderr());
    let logger = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        // a log line that cannot be written (log file on a full disk) is dropped; reporting it
        // with eprintln! would panic the request that logged it
        .log_internal_errors(false)
        .with_writer(log_writer);
    match log_format {
        LogFormat::Text => logger
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // the request's span (its ids) on every line, as `span`
        LogFormat::Json => logger
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    // before the store opens, so that its first commits are counted
    let metrics = match metrics_listen.map(|at| http::metrics::install().map(|h| (at, h))) {
        Some(Err(e)) => {
            eprintln!("error: cannot record metrics: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(m)) => Some(m),
        None => None,
    };
    let runtime = runtime();
    let location = store_args.location();
    let opened = match store_args.open(&runtime) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let keys =
        match KeySet::resolve_with(key_config, || runtime.block_on(opened.dev_key(&location))) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    if keys.is_sandbox() && !listen.ip().is_loopback() {
        eprintln!(
            "error: sandbox mode (no JWT key configured) only listens on a loopback address; \
             configure --jwt-hs256-secret-file or --jwt-public-key to listen on {listen}"
        );
        return ExitCode::FAILURE;
    }
    let demo_loaded = if demo {
        match runtime.block_on(load_demo(opened.store())) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        }
    } else {
        false
    };
    let store = opened.into_shared();
    let mode = if keys.is_sandbox() {
        "sandbox (requests without a token act as healthcare-worker)"
    } else {
        "secured (bearer token required)"
    };
    tracing::info!(mode, "authentication");
    let mut state = Settings::new(store, keys);
    let export_dir = export_dir.unwrap_or_else(|| match &location {
        Location::Redb(db) => {
            let mut dir = db.as_os_str().to_owned();
            dir.push(".exports");
            PathBuf::from(dir)
        }
        Location::Postgres(_) => {
            std::env::temp_dir().join(format!("pds-facade-exports-{}", std::process::id()))
        }
    });
    let exports = pds_facade::app::export::Exports::new(export_dir.clone(), export_expiry.into());
    match exports.clean() {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(jobs = n, dir = %export_dir.display(), "removed the exports of a previous run")
        }
        Err(e) => {
            eprintln!(
                "error: cannot clean the export directory {}: {e}",
                export_dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    state.app.exports = Arc::new(exports);
    state.app.idempotency_window = idempotency_window;
    state.app.allocation_range = allocation_range;
    state.app.case_due = case_due;
    if demo_loaded {
        match runtime.block_on(state.app.insert_demo_cases()) {
            Ok(n) => tracing::info!(cases = n, "demo cases loaded"),
            Err(e) => {
                eprintln!("error: cannot load demo cases: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    state.request_timeout = request_timeout;
    state.client_timeout = client_timeout.into();
    let rate_limit = rate_limit.unwrap_or(if state.keys.is_sandbox() { 0 } else { 50 });
    if rate_limit > 0 {
        state.rate_limit = Some(Arc::new(pds_facade::http::rate_limit::RateLimiter::new(
            rate_limit,
        )));
        tracing::info!(requests_per_second = rate_limit, "rate limit per client");
    }
    let result = runtime.block_on(async move {
        let mut state = state;
        if let Some((at, handle)) = metrics {
            let metrics_listener = tokio::net::TcpListener::bind(at).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("--metrics-listen {at}: {e}"))
            })?;
            let local = metrics_listener.local_addr()?;
            tracing::info!("metrics on http://{local}/metrics");
            tokio::spawn(http::metrics::serve(metrics_listener, handle));
        }
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        state.app.base_url = base_url
            .map(|b| b.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{local}{}", http::PDS_BASE));
        let shutdown = shutdown_signal()?;
        // The first line on stdout is the address, for scripts and tests that use port 0.
        println!("listening on http://{local}");
        tracing::info!(store = %location, "pds-facade listening on http://{local} (docs at /docs)");
        http::serve(listener, state.into(), shutdown).await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped; database closed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot serve on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the demo patients into an empty database; `false` when it was not empty.
async fn load_demo(store: &dyn PatientStore) -> Result<bool, ExitCode> {
    let count = store.count().await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    if count > 0 {
        tracing::info!(
            records = count,
            "database is not empty; demo data not loaded"
        );
        return Ok(false);
    }
    let schemas = Schemas::compile();
    let records = pds_facade::demo::patients()
        .into_iter()
        .enumerate()
        .map(|(i, p)| (import::Location::Entry(i), p))
        .collect();
    let mut new_id = new_object_id;
    let patients =
        import::validate_records(records, &schemas, today(), &mut new_id).map_err(|problems| {
            eprintln!("error: demo data is invalid: {problems:?}");
            ExitCode::FAILURE
        })?;
    store
        .insert_batch(&patients, ExistingRecords::Reject)
        .await
        .map_err(|e| {
            eprintln!("error: cannot load demo data: {e}");
            ExitCode::FAILURE
        })?;
    tracing::info!(records = patients.len(), "demo patients loaded");
    Ok(true)
}

/// Ctrl-C or SIGTERM.
/// SIGTERM or Ctrl-C. The handlers are installed before this returns — before the address is
/// announced — so a signal sent as soon as the server says it is listening is not missed.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing in-flight requests");
    })
}

fn generate(
    count: u64,
    seed: u64,
    out: Option<&Path>,
    shape: Shape,
    every: u64,
    merges_out: Option<&Path>,
) -> std::io::Result<()> {
    use std::io::Write;
    let most = pds_facade::generate::MAX_PATIENTS;
    if count > most {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("--count {count}: generate numbers at most {most} patients"),
        ));
    }
    if merges_out.is_some() && shape != Shape::National {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--merges-out goes only with --shape national (the uniform shape has no duplicates)",
        ));
    }
    let mut writer: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut merges = match merges_out {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let mut progress = pds_facade::progress::Progress::new(count.div_ceil(every), "generating");
    pds_facade::generate::write_ndjson(
        shape,
        seed,
        count,
        every,
        &mut writer,
        merges.as_mut().map(|m| m as &mut dyn Write),
        || progress.inc(1),
    )?;
    writer.flush()?;
    if let Some(m) = &mut merges {
        m.flush()?;
    }
    progress.finish();
    Ok(())
}

/// `FIRST-LAST` 10-digit NHS numbers → their first-nine-digit prefixes.
fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or("expected FIRST-LAST, e.g. 9993000000-9993999999")?;
    let parse = |x: &str| -> Result<u64, String> {
        if x.len() != 10 || !x.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("'{x}' is not a 10-digit number"));
        }
        Ok(x.parse::<u64>().map_err(|e| e.to_string())? / 10)
    };
    let (first, last) = (parse(a)?, parse(b)?);
    // a prefix's one valid number may lie just outside the range at either end
    let number = |prefix: u64| NhsNumber::from_prefix(prefix).map(|n| n.as_u64());
    let first = first + u64::from(number(first).is_some_and(|n| n < a.parse().unwrap_or(0)));
    let last = last - u64::from(number(last).is_some_and(|n| n > b.parse().unwrap_or(u64::MAX)));
    if first > last {
        return Err("the range holds no valid NHS number".into());
    }
    Ok((first, last))
}

fn migrate(store: &StoreArgs) -> ExitCode {
    let location = store.location();
    let url = match &location {
        Location::Postgres(url) => url,
        Location::Redb(path) => return migrate_file(path),
    };
    let runtime = runtime();
    let result = runtime.block_on(async {
        let pg = PgStore::connect_unmigrated(url, 1).await?;
        pg.migrate().await
    });
    let latest = pds_facade::store::postgres::schema::latest();
    match result {
        Ok(applied) if applied.is_empty() => {
            println!("{location}: schema up to date (version {latest})");
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            let names: Vec<String> = applied.iter().map(i32::to_string).collect();
            println!(
                "{location}: applied migration(s) {}; schema at version {latest}",
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {location}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Rewrites an embedded store's file in the current store format (see
/// `store::redb_store::migrate`).
fn migrate_file(path: &Path) -> ExitCode {
    if !path.exists() {
        eprintln!("error: {}: no such database file", path.display());
        return ExitCode::FAILURE;
    }
    match pds_facade::store::redb_store::migrate(path) {
        Ok(m) if m.from == pds_facade::store::redb_store::FORMAT => {
            println!(
                "{}: store format {} already; nothing to do",
                path.display(),
                m.from
            );
            ExitCode::SUCCESS
        }
        Ok(m) => {
            println!(
                "{}: rewritten from store format {} to {}: {} version(s) compressed; {} MiB → \
                 {} MiB",
                path.display(),
                m.from,
                pds_facade::store::redb_store::FORMAT,
                m.versions,
                m.bytes_before / (1 << 20),
                m.bytes_after / (1 << 20)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// How `copy` and `verify` open their stores.
const TRANSFER_OPTIONS: StoreOptions = StoreOptions {
    cache_bytes: 256 * 1024 * 1024,
    pool_size: 2,
};

fn export(store: &StoreArgs, out: Option<&Path>) -> ExitCode {
    let runtime = runtime();
    let opened = match store.open_existing(&runtime) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let run = |writer: &mut dyn std::io::Write| {
        runtime.block_on(async {
            let total = opened.store().count().await?;
            let mut progress = pds_facade::progress::Progress::new(total, "exporting");
            let n = transfer::export(
                opened.store(),
                writer,
                &transfer::Selection::default(),
                &mut |n| progress.inc(n),
            )
            .await?;
            progress.finish();
            Ok::<_, transfer::TransferError>(n)
        })
    };
    let result = match out {
        None => run(&mut std::io::BufWriter::new(std::io::stdout().lock())),
        Some(path) => transfer::PrivateFile::create(path)
            .map_err(transfer::TransferError::from)
            .and_then(|mut file| {
                let n = run(&mut file.writer)?;
                file.keep()?;
                Ok(n)
            }),
    };
    match result {
        Ok(n) => {
            eprintln!("exported {n} record(s)");
            ExitCode::SUCCESS
        }
        // `export | head` closes the pipe early: that is not an error
        Err(transfer::TransferError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the two stores of a copy or a comparison.
fn open_pair(
    runtime: &tokio::runtime::Runtime,
    from: &Location,
    to: &Location,
    create_target: bool,
) -> Result<(Opened, Opened), ExitCode> {
    if from == to {
        eprintln!("error: --from and --to are the same store");
        return Err(ExitCode::FAILURE);
    }
    // the source (and both stores of a comparison) as they are; a copy's target is created
    let first = report(runtime.block_on(Opened::open_existing(from, TRANSFER_OPTIONS)))?;
    let second = if create_target {
        report(runtime.block_on(Opened::open(to, TRANSFER_OPTIONS)))?
    } else {
        report(runtime.block_on(Opened::open_existing(to, TRANSFER_OPTIONS)))?
    };
    Ok((first, second))
}

fn copy(from: &Location, to: &Location) -> ExitCode {
    let runtime = runtime();
    let (source, target) = match open_pair(&runtime, from, to, true) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let total = source.store().count().await?;
        let mut progress = pds_facade::progress::Progress::new(total, "copying");
        let copied = transfer::copy(source.store(), target.store(), &mut progress).await?;
        progress.finish();
        Ok::<_, pds_facade::store::StoreError>(copied)
    });
    match result {
        Ok(copied) => {
            for (part, n) in &copied.parts {
                println!("{}: {n}", part.name());
            }
            println!(
                "copied {} record(s) from {from} to {to}; `pds-facade verify` with the same \
                 --from and --to compares them",
                copied.records
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}; nothing was copied to {to}");
            ExitCode::FAILURE
        }
    }
}

fn verify(from: &Location, to: &Location) -> ExitCode {
    let runtime = runtime();
    let (first, second) = match open_pair(&runtime, from, to, false) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let total = first.store().count().await?;
        let mut progress = pds_facade::progress::Progress::new(total, "comparing");
        let comparison = transfer::verify(first.store(), second.store(), &mut progress).await?;
        progress.finish();
        Ok::<_, pds_facade::store::StoreError>(comparison)
    });
    match result {
        Ok(c) => {
            for (part, a, b) in &c.parts {
                println!("{}: {a} in {from}, {b} in {to}", part.name());
            }
            for line in &c.shown {
                println!("  {line}");
            }
            if c.differences as usize > c.shown.len() {
                println!("  … and {} more", c.differences as usize - c.shown.len());
            }
            if c.differences == 0 {
                println!("the two stores hold the same");
                ExitCode::SUCCESS
            } else {
                println!("{} difference(s)", c.differences);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn explain(store: &StoreArgs, query: &str) -> ExitCode {
    let location = store.location();
    let Location::Postgres(_) = &location else {
        eprintln!("error: {location}: plans are PostgreSQL's; the embedded store has no planner");
        return ExitCode::FAILURE;
    };
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
            .into_owned()
            .collect();
    let query = match pds_facade::domain::search::SearchQuery::parse(&pairs, Role::BackOffice) {
        Ok(q) => q,
        Err(e) => {
            let why = e.diagnostics.unwrap_or_else(|| format!("{:?}", e.code));
            eprintln!("error: not a search: {why}");
            return ExitCode::FAILURE;
        }
    };
    let lookups = query.lookups();
    let runtime = runtime();
    let pg = match runtime.block_on(Opened::open_existing(&location, TRANSFER_OPTIONS)) {
        Ok(Opened::Postgres(pg)) => pg,
        Ok(_) => unreachable!("a PostgreSQL location opens a PostgreSQL store"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(pg.explain(&lookups));
    match result {
        Ok(plans) => print(
            &lookups
                .iter()
                .zip(plans)
                .map(|(lookup, plan)| format!("{lookup:?}\n{plan}\n"))
                .collect::<String>(),
        ),
        Err(e) => {
            eprintln!("error: {location}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn reindex(store: &StoreArgs, check: bool) -> ExitCode {
    let runtime = runtime();
    let opened = match store.open(&runtime) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = opened.store();
    let result = if check {
        runtime.block_on(store.check_indexes()).map(|problems| {
            for p in &problems {
                println!("{p}");
            }
            println!(
                "{} difference(s) between the indexes and the records",
                problems.len()
            );
            problems.is_empty()
        })
    } else {
        runtime.block_on(store.reindex()).map(|n| {
            println!("reindexed {n} record(s)");
            true
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_import(store: &StoreArgs, files: &[PathBuf], replace: bool, batch_size: usize) -> ExitCode {
    let runtime = runtime();
    let opened = match store.open(&runtime) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let schemas = Schemas::compile();
    let options = import::Options {
        existing: if replace {
            ExistingRecords::Replace
        } else {
            ExistingRecords::Reject
        },
        today: today(),
        new_id: new_object_id,
        batch: batch_size,
    };
    let reports: Vec<FileReport> = files
        .iter()
        .map(|f| import::import_file(opened.store(), runtime.handle(), &schemas, f, &options))
        .collect();
    let mut loaded = 0;
    let mut rejected_files = 0;
    for r in &reports {
        if r.problems.is_empty() {
            println!("{}: loaded {} record(s)", r.file, r.loaded);
            loaded += r.loaded;
        } else {
            rejected_files += 1;
            println!("{}: rejected, nothing loaded from this file", r.file);
            for p in &r.problems {
                match &p.location {
                    Some(l) => println!("  {}: {l}: {}", r.file, p.reason),
                    None => println!("  {}: {}", r.file, p.reason),
                }
            }
        }
    }
    println!("summary: {loaded} loaded, {rejected_files} file(s) rejected");
    if rejected_files > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_ranges_keep_within_their_ends() {
        assert_eq!(
            parse_range("9993000000-9993999999"),
            Ok((999_300_000, 999_399_999))
        );
        // 999300001's one valid number is 9993000019: inside 9993000015-…, so kept
        assert_eq!(parse_range("9993000015-9993000099").unwrap().0, 999_300_001);
        // 999300002's is 9993000027: below 9993000028, so the range starts at the next prefix
        assert_eq!(parse_range("9993000028-9993000099").unwrap().0, 999_300_003);
        // and above 9993000026 at the top end
        assert_eq!(parse_range("9993000000-9993000026").unwrap().1, 999_300_001);
        assert!(parse_range("9993000028-9993000029").is_err());
        assert!(parse_range("999300002-9993000029").is_err());
    }
}
