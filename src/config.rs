//! Settings: command-line flags, `WSHUB_*` environment variables and an
//! optional TOML file, in that order of precedence, over built-in defaults.
//! The log filter also reads `RUST_LOG`, between `WSHUB_LOG_LEVEL` and the
//! file.
//!
//! One clap definition serves all three sources, so `wshub --help` always
//! lists every option with its default and variable: a file's entries are
//! turned into flags placed *before* the real ones (later flags win), and an
//! entry whose variable is set is skipped (the variable wins over the file).
//! A file error names the entry's line and key: a value clap refuses is
//! traced back to the entry that produced the flag.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use thiserror::Error;

use crate::apps::{App, Apps, WebhookConfig};
use crate::auth::{AuthSource, Secret, TokenRules};
use crate::history::{Backend, HistoryConfig};
use crate::ratelimit::RateLimits;
use crate::service::ChatLimits;

/// Everything that can be wrong with the settings; start-up stops on any.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A flag or variable was malformed; clap's message names it. Printing it
    /// (`exit`) also serves `--help` and `--version`.
    #[error(transparent)]
    Flag(#[from] clap::Error),
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    FileUnreadable {
        /// The file named by `--config`.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML, holds an unknown key, or a
    /// value its option refuses.
    #[error("invalid config file {path}{}: {message}", location(*.line, .key.as_deref()))]
    FileInvalid {
        /// The file named by `--config`.
        path: PathBuf,
        /// Where in the file (1-based), when known.
        line: Option<usize>,
        /// The key concerned, when one is.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// Values that are each fine but do not work together.
    #[error("invalid settings: {0}")]
    Inconsistent(String),
}

/// `, line 3, key 'port'` for a file error's message.
fn location(line: Option<usize>, key: Option<&str>) -> String {
    let mut at = String::new();
    if let Some(line) = line.filter(|&l| l > 0) {
        at.push_str(&format!(", line {line}"));
    }
    if let Some(key) = key {
        at.push_str(&format!(", key '{key}'"));
    }
    at
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 54s, 500ms, 1m)"))
}

fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 65536, 64KiB, 16MiB)"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' (use B, KiB, MiB or GiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Most worker threads `--workers` accepts: far above any core count a
/// single process is given, low enough that a typo (an extra zero) cannot
/// start thousands of threads.
pub const MAX_WORKERS: usize = 1024;

/// The `--workers` default: the cores this process may run on (its CPU
/// affinity and cgroup quota count, not the machine's total), at most
/// [`MAX_WORKERS`].
pub fn available_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_WORKERS)
}

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a number of threads from 1 to {MAX_WORKERS} (default: the cores available, {} here)",
            available_workers()
        )),
    }
}

/// `--help` sections, in the order they first appear.
const SERVER: &str = "Server";
const TLS: &str = "TLS";
const AUTH: &str = "Auth (JWT access tokens)";
const LIMITS: &str = "Limits";
const HISTORY: &str = "History";
const SCALE_OUT: &str = "Scale-out (Redis)";
const PUSHER: &str = "Pusher (apps)";
const LOGGING: &str = "Logging";

/// Shown after the options by `--help`.
const EXAMPLES: &str = "\
Examples:
  wshub                                        page on http://localhost:8080, ws://localhost:8080/echo and /ws
  wshub --bind 127.0.0.1 --port 9000           reachable from this machine only
  wshub --tls-cert cert.pem --tls-key key.pem  https and wss only
  wshub --tls-self-signed                      quick local wss (browsers will warn)
  WSHUB_JWT_SECRET=... wshub                   every WebSocket needs a token signed with the secret
  wshub --redis redis://127.0.0.1:6379/0       rooms shared by every node on that Redis
  WSHUB_APPS=app-id:app-key:app-secret wshub   Pusher clients on ws://localhost:8080/app/app-key
  wshub --config /etc/wshub.toml               options from a file (flags and WSHUB_* override it)
  wshub --log-level wshub=debug,info --log-format json

Precedence: flag, then WSHUB_* variable, then file, then default (for the log filter, RUST_LOG
comes after WSHUB_LOG_LEVEL and before the file).";

/// A log filter as `EnvFilter` reads it (`info`, `wshub=debug,info`).
fn parse_log_filter(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("empty (examples: info, debug, wshub=debug,info)".into());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("{e} (examples: info, debug, wshub=debug,info)"))
}

/// A size the way `--max-message-size` takes it: `1MiB`, `64KiB`, `1000B`.
pub fn format_size(bytes: usize) -> String {
    for (unit, factor) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// The command line, as clap sees it. Field docs are the `--help` text.
#[derive(Debug, Parser)]
#[command(
    name = "wshub",
    version,
    about = "A real-time WebSocket server: echo, chat rooms, history and scale-out",
    after_help = EXAMPLES
)]
#[command(args_override_self = true)]
pub struct Cli {
    /// TOML file with any of these options (keys as the long flag names, with - or _)
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// TCP port to listen on
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on: 0.0.0.0 is every interface, 127.0.0.1 this machine only
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Allowed page origin for WebSocket upgrades and CORS (repeatable; '*' allows any).
    /// Without it: pages on localhost, 127.0.0.1 and `[::1]`
    #[arg(help_heading = SERVER)]
    #[arg(
        long = "allowed-origin",
        env = "WSHUB_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,

    /// Worker threads, each with its own runtime, that the connections (TLS, HTTP and WebSocket)
    /// are spread over. Default: the cores this process may use; 1: one thread for everything
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_WORKERS", value_name = "N", value_parser = parse_workers)]
    pub workers: Option<usize>,

    /// PEM certificate chain: serve https and wss only (needs --tls-key)
    #[arg(help_heading = TLS)]
    #[arg(long, env = "WSHUB_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(help_heading = TLS)]
    #[arg(long, env = "WSHUB_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve TLS with a freshly generated certificate for localhost (development only)
    #[arg(help_heading = TLS)]
    #[arg(long, env = "WSHUB_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// Require a JWT signed with this HS256 secret on every WebSocket (prefer the variable:
    /// a flag shows in the process list)
    #[arg(help_heading = AUTH)]
    #[arg(
        long,
        env = "WSHUB_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,

    /// Require a JWT signed for this PEM public key (RSA: RS256.., EC: ES256/ES384, Ed25519)
    #[arg(help_heading = AUTH)]
    #[arg(long, env = "WSHUB_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// With tokens required: their `aud` claim must name this audience
    #[arg(help_heading = AUTH)]
    #[arg(long, env = "WSHUB_JWT_AUDIENCE", value_name = "NAME")]
    pub jwt_audience: Option<String>,

    /// With tokens required: their `iss` claim must be this issuer
    #[arg(help_heading = AUTH)]
    #[arg(long, env = "WSHUB_JWT_ISSUER", value_name = "NAME")]
    pub jwt_issuer: Option<String>,

    /// How often the server pings each client
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_PING_INTERVAL", default_value = "54s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Close a client that sends nothing (not even a pong) for this long
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// Close a client whose socket accepts no bytes for this long
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// On SIGINT/SIGTERM, wait this long for clients to answer the 1001 close
    #[arg(help_heading = SERVER)]
    #[arg(long, env = "WSHUB_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest message accepted (all fragments together); larger ones get close 1009
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_MESSAGE_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Bytes all unfinished messages may hold together; a connection whose message would pass it
    /// is closed with 1013 (at least --max-message-size)
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_INCOMPLETE_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub max_incomplete_bytes: usize,

    /// Accept permessage-deflate (RFC 7692) from clients that offer it, always without context
    /// takeover, so an idle connection keeps no zlib state (--permessage-deflate=false: never)
    #[arg(help_heading = SERVER)]
    #[arg(
        long,
        env = "WSHUB_PERMESSAGE_DEFLATE",
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub permessage_deflate: bool,

    /// Most simultaneous WebSocket connections; beyond it, HTTP 503 before the upgrade
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Per-connection outbound queue bound in messages; a client beyond it is evicted (1008)
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_QUEUE_MESSAGES", default_value_t = 1024)]
    pub max_queue_messages: usize,

    /// Per-connection outbound queue bound in bytes; a client beyond it is evicted (1008)
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_QUEUE_BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub max_queue_bytes: usize,

    /// Messages per second one connection may send on average (excess is dropped); 0: no limit
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_RATE_MESSAGES", default_value_t = 50)]
    pub rate_messages: u32,

    /// Messages one connection may send at once before --rate-messages applies
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,

    /// Message bytes per second one connection may send (burst: 1 s, at least one largest message); 0: no limit
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_RATE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub rate_bytes: usize,

    /// Most simultaneous WebSocket connections from one IP address (HTTP 429 beyond); 0: no limit
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Where chat history is kept: an SQLite file, memory, or nowhere
    #[arg(help_heading = HISTORY)]
    #[arg(long, env = "WSHUB_HISTORY", value_enum, default_value_t = HistoryKind::Sqlite)]
    pub history: HistoryKind,

    /// The SQLite history file (WAL mode; created if missing)
    #[arg(help_heading = HISTORY)]
    #[arg(
        long,
        env = "WSHUB_HISTORY_PATH",
        value_name = "FILE",
        default_value = "wshub.sqlite"
    )]
    pub history_path: PathBuf,

    /// Messages kept per room (older ones are dropped)
    #[arg(help_heading = HISTORY)]
    #[arg(long, env = "WSHUB_HISTORY_MAX_MESSAGES", default_value_t = 10_000)]
    pub history_max_messages: usize,

    /// Age after which messages are dropped; 0s keeps them forever
    #[arg(help_heading = HISTORY)]
    #[arg(long, env = "WSHUB_HISTORY_MAX_AGE", default_value = "7days", value_parser = parse_duration)]
    pub history_max_age: Duration,

    /// History writes are committed in batches this often: at most this much is lost on a crash
    #[arg(help_heading = HISTORY)]
    #[arg(long, env = "WSHUB_HISTORY_COMMIT_INTERVAL", default_value = "50ms", value_parser = parse_duration)]
    pub history_commit_interval: Duration,

    /// Most bytes of history kept in memory over all rooms (memory store, SQLite's replay tail);
    /// beyond it the rooms that hold the most drop their oldest messages
    #[arg(help_heading = HISTORY)]
    #[arg(long, env = "WSHUB_HISTORY_MAX_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub history_max_bytes: usize,

    /// Messages a wshub.v1 client receives when it joins a room
    #[arg(help_heading = HISTORY)]
    #[arg(long, env = "WSHUB_JOIN_HISTORY", default_value_t = 50)]
    pub join_history: usize,

    /// Rooms one wshub.v1 connection may be in at once
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_ROOMS_PER_CONN", default_value_t = 16)]
    pub max_rooms_per_conn: usize,

    /// Longest chat text accepted in wshub.v1 (longer gets an error frame)
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_TEXT_SIZE", default_value = "4KiB", value_parser = parse_size)]
    pub max_text_size: usize,

    /// Bad wshub.v1 requests tolerated per connection before closing it with 1008
    #[arg(help_heading = LIMITS)]
    #[arg(long, env = "WSHUB_MAX_BAD_REQUESTS", default_value_t = 10)]
    pub max_bad_requests: u32,

    /// Redis URL (redis://HOST:PORT/DB): share rooms, history and presence with other wshub nodes
    #[arg(help_heading = SCALE_OUT)]
    #[arg(long, env = "WSHUB_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// This node's name in the cluster (presence, logs); default: a random one
    #[arg(help_heading = SCALE_OUT)]
    #[arg(long, env = "WSHUB_NODE_ID")]
    pub node_id: Option<String>,

    /// A Pusher app, ID:KEY:SECRET, client events on (repeatable): clients connect to /app/KEY,
    /// the HTTP API is /apps/ID. Every setting: `[[apps]]` in the --config file. Prefer the
    /// variable: a flag shows in the process list
    #[arg(help_heading = PUSHER)]
    #[arg(
        long = "app",
        env = "WSHUB_APPS",
        value_delimiter = ',',
        value_name = "ID:KEY:SECRET",
        hide_env_values = true
    )]
    pub apps: Vec<String>,

    /// A webhook URL for the apps of --app and WSHUB_APPS (repeatable): each gets every webhook
    /// event, signed with its secret. Per-app URLs and event filters: `[[apps.webhooks]]`
    #[arg(help_heading = PUSHER)]
    #[arg(
        long = "webhook-url",
        env = "WSHUB_WEBHOOK_URLS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub webhook_urls: Vec<String>,

    /// The `--config` file's `[[apps]]` tables, validated one by one (set
    /// by [`Cli::load`]; skipped while `WSHUB_APPS` is set, as any file
    /// entry whose variable is).
    #[arg(skip)]
    pub file_apps: Vec<App>,

    /// Log filter: error, warn, info, debug, trace, or directives like wshub=debug,info. Without
    /// the flag or WSHUB_LOG_LEVEL, RUST_LOG is used (before the file's value)
    #[arg(help_heading = LOGGING)]
    #[arg(long, env = "WSHUB_LOG_LEVEL", default_value = "info", value_name = "FILTER", value_parser = parse_log_filter)]
    pub log_level: String,

    /// Log line format
    #[arg(help_heading = LOGGING)]
    #[arg(long, env = "WSHUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log lines held while the log output (stderr) is slow; beyond, lines are dropped and
    /// counted (wshub_log_lines_dropped_total) rather than stall the server
    #[arg(help_heading = LOGGING)]
    #[arg(
        long,
        env = "WSHUB_LOG_BUFFER_LINES",
        default_value_t = 8192,
        value_name = "LINES",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub log_buffer_lines: u32,

    /// Where `log_level` came from when it is `RUST_LOG`'s value (set by
    /// [`Cli::load`]; for the start-up line).
    #[arg(skip)]
    pub log_level_from_rust_log: bool,
}

/// The `--history` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryKind {
    /// An SQLite file (durable; the default).
    Sqlite,
    /// In memory (lost at exit).
    Memory,
    /// Not kept (ids still increase).
    None,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files given by the operator.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// The leaf's private key.
        key: PathBuf,
    },
    /// A certificate for localhost generated at start (development).
    SelfSigned,
}

/// As the flags say it: `self-signed`, or the certificate's path.
impl std::fmt::Display for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSource::Files { cert, .. } => write!(f, "{}", cert.display()),
            TlsSource::SelfSigned => f.write_str("self-signed"),
        }
    }
}

/// The server's settings, validated. `Config::default()` is the seed's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address to bind; default 0.0.0.0 (all interfaces), as the seed.
    pub bind: IpAddr,
    /// Port; default 8080. 0 picks a free one (tests).
    pub port: u16,
    /// Allowed page origins; empty means the localhost default, `*` any.
    pub allowed_origins: Vec<String>,
    /// TLS, when wanted: then the server speaks https and wss only.
    pub tls: Option<TlsSource>,
    /// Worker threads the connections are spread over, each running its
    /// own current-thread runtime; default: the cores available
    /// ([`available_workers`]). 1 runs everything (accept, HTTP,
    /// connections) on the runtime that calls [`Server::run`]; above 1,
    /// that runtime only accepts (and talks to Redis). Each worker costs a
    /// thread, its runtime and its 64 KiB read buffer.
    ///
    /// [`Server::run`]: crate::Server::run
    pub workers: usize,
    /// Server ping period; default 54 s (90 % of the read timeout).
    pub ping_interval: Duration,
    /// Silence after which a client is closed; default 60 s.
    pub read_timeout: Duration,
    /// Longest time one write may stay blocked; default 10 s.
    pub write_timeout: Duration,
    /// Wait for clients' close replies at shutdown; default 5 s.
    pub shutdown_timeout: Duration,
    /// Largest message in bytes; default 1 MiB. For compressed messages,
    /// the inflated size (inflation stops as soon as it is passed).
    pub max_message_size: usize,
    /// Bytes that messages still arriving (held between reads) may hold
    /// across all connections; default 256 MiB. The connection whose
    /// message would pass it is closed with 1013.
    pub max_incomplete_bytes: usize,
    /// Negotiate permessage-deflate with clients that offer it; default on.
    /// Always without context takeover in either direction: each message
    /// is (de)compressed on its own with the thread's shared zlib state, so
    /// an idle connection holds none (a context-takeover connection would
    /// hold some 200-300 KiB), at some cost in ratio for small messages.
    pub permessage_deflate: bool,
    /// Most simultaneous WebSocket connections; default 10,000.
    pub max_connections: usize,
    /// Outbound queue bound per connection, in messages; default 1,024.
    pub max_queue_messages: usize,
    /// Outbound queue bound per connection, in bytes; default 4 MiB.
    pub max_queue_bytes: usize,
    /// Chat history: store, retention, commit interval.
    pub history: HistoryConfig,
    /// Messages replayed on join; default 50.
    pub join_history: usize,
    /// Limits of the `wshub.v1` protocol per connection.
    pub chat: ChatLimits,
    /// Tokens required on WebSocket upgrades, checked against this; `None`:
    /// no tokens (`--jwt-secret`, `--jwt-public-key`).
    pub auth: Option<AuthSource>,
    /// Claims a token must carry besides its signature and expiry
    /// (`--jwt-audience`, `--jwt-issuer`).
    pub token_rules: TokenRules,
    /// Per-connection message and byte rates (`--rate-*`).
    pub rate: RateLimits,
    /// Most connections from one IP address; 0: no limit.
    pub max_connections_per_ip: usize,
    /// Redis URL: when set, rooms span every node using the same Redis.
    pub redis: Option<String>,
    /// This node's name in the cluster; generated when `None`.
    pub node_id: Option<String>,
    /// Pusher apps (`--app`, `WSHUB_APPS`, the file's `[[apps]]`): the
    /// file's and the flags' together. Empty (the default): no Pusher
    /// endpoint.
    pub apps: Apps,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults live in one place, the clap definition; variables are
        // ignored so that a library default never depends on the environment.
        let command = Cli::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.get_matches_from(["wshub"]);
        Cli::from_arg_matches(&matches)
            .map(|cli| cli.into_config())
            .expect("built-in defaults parse")
            .expect("built-in defaults are valid")
    }
}

impl Cli {
    /// Parses `args` (the first is the program name), `WSHUB_*` variables and
    /// the `--config` file they name.
    ///
    /// # Errors
    /// [`ConfigError`] naming the bad flag, variable, file or key.
    pub fn load<I, T>(args: I) -> Result<Cli, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Cli::command().try_get_matches_from(&args)?;
        let first = Cli::from_arg_matches(&matches)?;
        let (matches, mut cli) = match first.config.clone() {
            None => (matches, first),
            Some(path) => {
                let (matches, apps) = merge_file(&path, args)?;
                let mut cli = Cli::from_arg_matches(&matches)?;
                cli.file_apps = apps;
                (matches, cli)
            }
        };
        // The log filter: flag, WSHUB_LOG_LEVEL, then RUST_LOG, then the
        // file (whose entry `file_to_args` skipped), then the default.
        if matches.value_source("log_level") == Some(ValueSource::DefaultValue) {
            if let Some(filter) = rust_log() {
                cli.log_level = parse_log_filter(&filter)
                    .map_err(|e| ConfigError::Inconsistent(format!("RUST_LOG '{filter}' is not a log filter: {e}")))?;
                cli.log_level_from_rust_log = true;
            }
        }
        Ok(cli)
    }

    /// Checks the values against each other and builds the [`Config`].
    ///
    /// # Errors
    /// [`ConfigError::Inconsistent`] with what to change.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if self.ping_interval.is_zero() || self.ping_interval >= self.read_timeout {
            return Err(ConfigError::Inconsistent(format!(
                "--ping-interval ({}) must be above zero and below --read-timeout ({}), or live clients would be closed",
                humantime::format_duration(self.ping_interval),
                humantime::format_duration(self.read_timeout)
            )));
        }
        for (name, value) in [
            ("--write-timeout", self.write_timeout),
            ("--shutdown-timeout", self.shutdown_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Inconsistent(format!("{name} must be above zero")));
            }
        }
        for (name, value) in [
            ("--max-message-size", self.max_message_size),
            ("--max-connections", self.max_connections),
            ("--max-queue-messages", self.max_queue_messages),
            ("--max-queue-bytes", self.max_queue_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Inconsistent(format!("{name} must be above zero")));
            }
        }
        for origin in &self.allowed_origins {
            if origin != "*" && crate::origin::Origin::parse(origin).is_none() {
                return Err(ConfigError::Inconsistent(format!(
                    "--allowed-origin '{origin}' must be '*' or an origin: http:// or https://, a host, an optional port, no path"
                )));
            }
        }
        if self.history_commit_interval.is_zero() {
            return Err(ConfigError::Inconsistent(
                "--history-commit-interval must be above zero".into(),
            ));
        }
        if self.history_max_messages == 0 || self.max_rooms_per_conn == 0 || self.max_text_size == 0 {
            return Err(ConfigError::Inconsistent(
                "--history-max-messages, --max-rooms-per-conn and --max-text-size must be above zero".into(),
            ));
        }
        if self.history_max_bytes == 0 {
            return Err(ConfigError::Inconsistent(
                "--history-max-bytes must be above zero (with --history none nothing is kept anyway)".into(),
            ));
        }
        if self.max_incomplete_bytes < self.max_message_size {
            return Err(ConfigError::Inconsistent(format!(
                "--max-incomplete-bytes ({}) must be at least --max-message-size ({})",
                self.max_incomplete_bytes, self.max_message_size
            )));
        }
        if self.max_text_size > self.max_message_size {
            return Err(ConfigError::Inconsistent(format!(
                "--max-text-size ({}) cannot exceed --max-message-size ({})",
                self.max_text_size, self.max_message_size
            )));
        }
        let history = HistoryConfig {
            backend: match self.history {
                HistoryKind::Sqlite => Backend::Sqlite(self.history_path),
                HistoryKind::Memory => Backend::Memory,
                HistoryKind::None => Backend::None,
            },
            max_messages_per_room: self.history_max_messages,
            max_age: (!self.history_max_age.is_zero()).then_some(self.history_max_age),
            commit_interval: self.history_commit_interval,
            cache_per_room: self.history_max_messages.min(1_000),
            max_bytes: self.history_max_bytes,
        };
        let chat = ChatLimits {
            max_rooms: self.max_rooms_per_conn,
            max_text_bytes: self.max_text_size,
            max_bad_requests: self.max_bad_requests,
            max_history: self.history_max_messages,
            // Set by the server, which knows the apps in the end.
            signed_channels_reserved: false,
        };
        if let Some(url) = &self.redis {
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
                return Err(ConfigError::Inconsistent(format!(
                    "--redis '{url}' must be a URL like redis://127.0.0.1:6379/0"
                )));
            }
        }
        if self.rate_messages > 0 && self.rate_burst == 0 {
            return Err(ConfigError::Inconsistent(
                "--rate-burst must be above zero when --rate-messages is set (0 there turns the limit off)".into(),
            ));
        }
        if self.jwt_secret.as_deref() == Some("") {
            return Err(ConfigError::Inconsistent("--jwt-secret cannot be empty".into()));
        }
        let auth = match (self.jwt_secret, self.jwt_public_key) {
            (Some(secret), _) => Some(AuthSource::Secret(Secret::new(secret))),
            (None, Some(path)) => Some(AuthSource::PublicKey(path)),
            (None, None) => None,
        };
        let token_rules = TokenRules {
            audience: self.jwt_audience.filter(|a| !a.is_empty()),
            issuer: self.jwt_issuer.filter(|i| !i.is_empty()),
        };
        if auth.is_none() && token_rules != TokenRules::default() {
            return Err(ConfigError::Inconsistent(
                "--jwt-audience and --jwt-issuer need tokens: give --jwt-secret or --jwt-public-key".into(),
            ));
        }
        let rate = RateLimits::new(
            self.rate_messages,
            self.rate_burst,
            self.rate_bytes as u64,
            self.max_message_size,
        );
        let mut apps = self.file_apps;
        if !self.webhook_urls.is_empty() && self.apps.is_empty() {
            return Err(ConfigError::Inconsistent(
                "--webhook-url is for the apps of --app (or WSHUB_APPS); give one, or use [[apps.webhooks]]".into(),
            ));
        }
        for spec in &self.apps {
            let mut app = App::from_spec(spec).map_err(|e| ConfigError::Inconsistent(format!("--app: {e}")))?;
            app.webhooks = self.webhook_urls.iter().map(WebhookConfig::new).collect();
            apps.push(app);
        }
        let apps = Apps::new(apps).map_err(|e| ConfigError::Inconsistent(format!("--app and [[apps]]: {e}")))?;
        let tls = match (self.tls_cert, self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
            (_, _, true) => Some(TlsSource::SelfSigned),
            _ => None,
        };
        Ok(Config {
            bind: self.bind,
            port: self.port,
            allowed_origins: self.allowed_origins,
            tls,
            workers: self.workers.unwrap_or_else(available_workers),
            ping_interval: self.ping_interval,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            shutdown_timeout: self.shutdown_timeout,
            max_message_size: self.max_message_size,
            max_incomplete_bytes: self.max_incomplete_bytes,
            permessage_deflate: self.permessage_deflate,
            max_connections: self.max_connections,
            max_queue_messages: self.max_queue_messages,
            max_queue_bytes: self.max_queue_bytes,
            history,
            join_history: self.join_history,
            chat,
            auth,
            token_rules,
            rate,
            max_connections_per_ip: self.max_connections_per_ip,
            redis: self.redis,
            node_id: self.node_id,
            apps,
        })
    }
}

/// `RUST_LOG`, when set to something.
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty())
}

/// Parses the command line with the `--config` file's entries placed
/// before the real flags (later flags win), and reads its `[[apps]]`.
fn merge_file(path: &std::path::Path, args: Vec<OsString>) -> Result<(clap::ArgMatches, Vec<App>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |problem: FileProblem| ConfigError::FileInvalid {
        path: path.to_owned(),
        line: problem.line,
        key: problem.key,
        message: problem.message,
    };
    let mut entries = file_to_args(&text).map_err(invalid)?;
    // A flag replaces the file's value, lists too (clap would append a
    // list flag to the file's entries): `--allowed-origin` narrows what
    // the file allows rather than adding to it. Apps are the exception,
    // documented: `--app` adds to the file's.
    let on_command_line = command_line_longs(&args);
    entries.retain(|entry| entry.long == "app" || !on_command_line.contains(&entry.long));
    // So does a flag or variable that cannot go with a file's entry:
    // `--tls-cert` over a file's `tls_self_signed` means that certificate,
    // not an error.
    let mut given = on_command_line;
    given.extend(Cli::command().get_arguments().filter_map(|arg| {
        let set = arg.get_env().is_some_and(|name| std::env::var_os(name).is_some());
        arg.get_long().filter(|_| set).map(str::to_owned)
    }));
    let overridden = conflicting_longs(&given);
    entries.retain(|entry| !overridden.contains(&entry.long));
    let apps = file_apps(&text).map_err(invalid)?;
    let mut merged = Vec::with_capacity(args.len() + entries.len() * 2);
    merged.extend(args.first().cloned());
    for entry in &entries {
        merged.extend(entry.args.iter().cloned());
    }
    merged.extend(args.into_iter().skip(1));
    let matches = Cli::command().try_get_matches_from(merged).map_err(|e| {
        // A value clap refuses came from the file (the command line alone
        // parsed): name the entry it came from.
        let entry = invalid_long_name(&e).and_then(|long| entries.iter().find(|entry| entry.long == long));
        invalid(FileProblem {
            line: entry.map(|entry| entry.line),
            key: entry.map(|entry| entry.key.clone()),
            message: clap_message(&e),
        })
    })?;
    Ok((matches, apps))
}

/// The long names of the options given on the command line itself (none
/// when it does not parse alone: the merged parse then says why).
fn command_line_longs(args: &[OsString]) -> Vec<String> {
    let command = Cli::command();
    let Ok(matches) = command.clone().try_get_matches_from(args) else {
        return Vec::new();
    };
    command
        .get_arguments()
        .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect()
}

/// The long names of the options that conflict with any of `longs`, in
/// either direction (clap records a conflict on one side only).
fn conflicting_longs(longs: &[String]) -> Vec<String> {
    let command = Cli::command();
    let given = |arg: &clap::Arg| arg.get_long().is_some_and(|long| longs.iter().any(|l| l == long));
    let mut conflicting = Vec::new();
    for arg in command.get_arguments() {
        let conflicts = command.get_arg_conflicts_with(arg);
        if given(arg) {
            conflicting.extend(conflicts.iter().filter_map(|other| other.get_long()).map(str::to_owned));
        } else if conflicts.iter().any(|other| given(other)) {
            conflicting.extend(arg.get_long().map(str::to_owned));
        }
    }
    conflicting
}

/// The file's `[[apps]]` tables, each checked, unless `WSHUB_APPS` is set
/// (the variable wins over the file, as for every option).
fn file_apps(text: &str) -> Result<Vec<App>, FileProblem> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        apps: Vec<toml::Spanned<App>>,
    }
    if std::env::var_os("WSHUB_APPS").is_some() {
        return Ok(Vec::new());
    }
    let file: File = toml::from_str(text).map_err(|e| FileProblem {
        line: e.span().map(|span| line_at(text, span.start)),
        key: Some("apps".into()),
        message: e.message().to_owned(),
    })?;
    file.apps
        .into_iter()
        .map(|app| {
            let line = line_at(text, app.span().start);
            let app = app.into_inner();
            app.validate().map_err(|e| FileProblem {
                line: Some(line),
                key: Some("apps".into()),
                message: e.to_string(),
            })?;
            Ok(app)
        })
        .collect()
}

/// What is wrong with the file, and where.
#[derive(Debug)]
struct FileProblem {
    line: Option<usize>,
    key: Option<String>,
    message: String,
}

/// One `key = value` entry of the file, as flags.
#[derive(Debug)]
struct FileEntry {
    key: String,
    /// The flag's long name.
    long: String,
    line: usize,
    args: Vec<OsString>,
}

/// The long name of the argument a clap error is about (`--port <PORT>` gives `port`).
fn invalid_long_name(e: &clap::Error) -> Option<String> {
    match e.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(arg) => {
            let name = arg.strip_prefix("--")?;
            Some(name.split([' ', '=']).next().unwrap_or(name).to_owned())
        }
        _ => None,
    }
}

/// A clap error's first line, without its `error: ` prefix or usage tips.
/// What clap says is wrong, its tips included, without its usage and
/// `--help` advice (which are about the command line, not the file).
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let said: Vec<&str> = text
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let said = said.join("; ");
    said.strip_prefix("error: ").unwrap_or(&said).to_owned()
}

/// The 1-based line of `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line where the top-level `key` is set (bare or quoted).
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
                .iter()
                .any(|k| {
                    line.strip_prefix(k.as_str())
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                })
        })
        .map(|index| index + 1)
}

/// Turns `key = value` entries into `--key value` flags, skipping keys whose
/// environment variable is set (and the log filter when `RUST_LOG` is).
fn file_to_args(text: &str) -> Result<Vec<FileEntry>, FileProblem> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| FileProblem {
        line: e.span().map(|span| line_at(text, span.start)),
        key: None,
        message: e.message().to_owned(),
    })?;
    let command = Cli::command();
    let mut entries = Vec::new();
    for (key, value) in table {
        if key == "apps" {
            continue; // [[apps]] tables: file_apps
        }
        let line = line_of_key(text, &key);
        let problem = |message: String| FileProblem {
            line,
            key: Some(key.clone()),
            message,
        };
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| problem("unknown key (see wshub --help)".into()))?;
        if arg.get_env().is_some_and(|name| std::env::var_os(name).is_some()) {
            continue;
        }
        if long == "log-level" && rust_log().is_some() {
            continue;
        }
        let flag = format!("--{long}");
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        let mut args: Vec<OsString> = Vec::new();
        for value in values {
            match value {
                toml::Value::Boolean(true) => args.push(flag.clone().into()),
                // A switch that is on by default needs its "false" spelt out.
                toml::Value::Boolean(false) if arg.get_action().takes_values() => {
                    args.push(format!("{flag}=false").into());
                }
                toml::Value::Boolean(false) => {}
                // One `--flag=value` argument: a value that starts with
                // `-` (a secret, a negative number) stays a value.
                toml::Value::String(s) => args.push(format!("{flag}={s}").into()),
                toml::Value::Integer(i) => args.push(format!("{flag}={i}").into()),
                other => {
                    return Err(problem(format!(
                        "unsupported value {other} (use a string, a number, true/false or a list of them)"
                    )))
                }
            }
        }
        entries.push(FileEntry {
            line: line.unwrap_or(0),
            key,
            long,
            args,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let config = Config::default();
        assert_eq!(config.port, 8080);
        assert_eq!(config.ping_interval, Duration::from_secs(54));
        assert_eq!(config.read_timeout, Duration::from_secs(60));
        assert_eq!(config.write_timeout, Duration::from_secs(10));
        assert_eq!(config.max_message_size, 1 << 20);
        assert!(config.tls.is_none());
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn ping_must_come_before_the_read_deadline() {
        let cli = Cli::try_parse_from(["wshub", "--ping-interval", "60s", "--read-timeout", "60s"]).unwrap();
        let err = cli.into_config().unwrap_err().to_string();
        assert!(err.contains("--ping-interval"), "{err}");
    }

    #[test]
    fn the_incomplete_message_budget_defaults_to_256_mib_and_holds_one_message() {
        assert_eq!(Config::default().max_incomplete_bytes, 256 << 20);
        let cli = Cli::try_parse_from(["wshub", "--max-incomplete-bytes", "512KiB"]).unwrap();
        let err = cli.into_config().unwrap_err().to_string();
        assert!(
            err.contains("--max-incomplete-bytes (524288) must be at least --max-message-size"),
            "{err}"
        );
        let cli = Cli::try_parse_from(["wshub", "--max-incomplete-bytes", "1GiB"]).unwrap();
        assert_eq!(cli.into_config().unwrap().max_incomplete_bytes, 1 << 30);
    }

    #[test]
    fn file_values_yield_to_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wshub.toml");
        std::fs::write(&path, "port = 9000\nmax_message_size = \"2MiB\"\nallowed-origin = [\"https://a.example\", \"https://b.example\"]\n").unwrap();
        let cli = Cli::load(["wshub", "--config", path.to_str().unwrap(), "--port", "9001"]).unwrap();
        assert_eq!(cli.port, 9001);
        assert_eq!(cli.max_message_size, 2 << 20);
        assert_eq!(cli.allowed_origins, ["https://a.example", "https://b.example"]);
    }

    #[test]
    fn a_list_flag_replaces_the_files_list() {
        let cli = load_file_with(
            "allowed-origin = [\"*\"]\n",
            &["--allowed-origin", "https://app.example"],
        )
        .unwrap();
        assert_eq!(cli.allowed_origins, ["https://app.example"]);
    }

    #[test]
    fn a_flag_overrides_the_file_entries_it_cannot_go_with() {
        let file = "tls_self_signed = true\nport = 9443\n";
        let cli = load_file_with(file, &["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert!(!cli.tls_self_signed, "the command line's certificate wins");
        assert_eq!(cli.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(cli.port, 9443, "the rest of the file still applies");
        let cli = load_file_with("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n", &["--tls-self-signed"]).unwrap();
        assert!(cli.tls_self_signed && cli.tls_cert.is_none() && cli.tls_key.is_none());
    }

    #[test]
    fn a_conflict_within_the_file_is_named_whole() {
        let (_, _, shown) = file_error("tls_self_signed = true\ntls_cert = \"c.pem\"\n");
        assert!(shown.contains("cannot be used with"), "{shown}");
        assert!(!shown.contains("Usage"), "{shown}");
    }

    #[test]
    fn file_values_may_start_with_a_dash_and_bad_numbers_name_their_key() {
        let cli = load_file("jwt_secret = \"-Zk3_a-secret-that-starts-with-a-dash\"\nnode_id = \"-edge-1\"\n").unwrap();
        assert_eq!(cli.node_id.as_deref(), Some("-edge-1"));
        let (line, key, shown) = file_error("port = 9000\nworkers = -1\n");
        assert_eq!((line, key.as_deref()), (Some(2), Some("workers")), "{shown}");
    }

    #[test]
    fn permessage_deflate_is_on_by_default_and_can_be_turned_off() {
        assert!(Config::default().permessage_deflate);
        assert!(
            !Cli::load(["wshub", "--permessage-deflate=false"])
                .unwrap()
                .permessage_deflate
        );
        assert!(Cli::load(["wshub", "--permessage-deflate"]).unwrap().permessage_deflate);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wshub.toml");
        std::fs::write(&path, "permessage-deflate = false\n").unwrap();
        let cli = Cli::load(["wshub", "--config", path.to_str().unwrap()]).unwrap();
        assert!(
            !cli.permessage_deflate,
            "a file's false must not fall back to the default"
        );
    }

    /// Loads `text` as the `--config` file.
    fn load_file(text: &str) -> Result<Cli, ConfigError> {
        load_file_with(text, &[])
    }

    /// Loads `text` as the `--config` file, with `flags` after it.
    fn load_file_with(text: &str, flags: &[&str]) -> Result<Cli, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wshub.toml");
        std::fs::write(&path, text).unwrap();
        let mut args = vec!["wshub", "--config", path.to_str().unwrap()];
        args.extend_from_slice(flags);
        Cli::load(args)
    }

    /// The line and key a file error names, and its message.
    fn file_error(text: &str) -> (Option<usize>, Option<String>, String) {
        match load_file(text).unwrap_err() {
            e @ ConfigError::FileInvalid { .. } => {
                let shown = e.to_string();
                let ConfigError::FileInvalid { line, key, .. } = e else {
                    unreachable!()
                };
                (line, key, shown)
            }
            other => panic!("not a file error: {other}"),
        }
    }

    #[test]
    fn unknown_file_key_is_named_with_its_line() {
        let (line, key, shown) = file_error("# settings\nport = 9000\nprot = 9000\n");
        assert_eq!((line, key.as_deref()), (Some(3), Some("prot")));
        assert!(shown.contains("wshub.toml, line 3, key 'prot': unknown key"), "{shown}");
    }

    #[test]
    fn a_bad_file_value_names_its_line_and_key() {
        let (line, key, shown) = file_error("port = 9000\n\n  max-message-size = \"12 parsecs\"\n");
        assert_eq!((line, key.as_deref()), (Some(3), Some("max-message-size")));
        assert!(
            shown.contains("line 3, key 'max-message-size': invalid value '12 parsecs'"),
            "{shown}"
        );
        assert!(!shown.contains("For more information"), "{shown}");
        let (line, key, _) = file_error("\"port\" = \"eighty\"\n");
        assert_eq!((line, key.as_deref()), (Some(1), Some("port")));
        let (line, key, _) = file_error("history = \"sqlite\"\nhistory-max-age = { days = 7 }\n");
        assert_eq!((line, key.as_deref()), (Some(2), Some("history-max-age")));
    }

    #[test]
    fn a_toml_syntax_error_names_its_line() {
        let (line, key, shown) = file_error("port = 9000\nbind = \"127.0.0.1\npermessage-deflate = true\n");
        assert_eq!((line, key), (Some(2), None));
        assert!(shown.contains("wshub.toml, line 2: "), "{shown}");
    }

    #[test]
    fn a_value_from_the_command_line_is_not_blamed_on_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wshub.toml");
        std::fs::write(&path, "port = 9000\n").unwrap();
        let err = Cli::load(["wshub", "--config", path.to_str().unwrap(), "--port", "x"]).unwrap_err();
        assert!(matches!(err, ConfigError::Flag(_)), "{err}");
    }

    #[test]
    fn log_filters_are_checked() {
        assert!(Cli::try_parse_from(["wshub", "--log-level", "wshub=debug,info"]).is_ok());
        assert!(Cli::try_parse_from(["wshub", "--log-level", "wshub=loud"]).is_err());
        assert!(Cli::try_parse_from(["wshub", "--log-level", ""]).is_err());
        assert!(Cli::try_parse_from(["wshub", "--log-buffer-lines", "0"]).is_err());
    }

    #[test]
    fn sizes_print_as_they_parse() {
        for size in [1 << 20, 4 << 10, 1000, 3 << 30, (1 << 20) + 1] {
            assert_eq!(parse_size(&format_size(size)), Ok(size));
        }
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1536), "1536B");
    }

    #[test]
    fn help_is_grouped_by_topic_with_examples() {
        let help = Cli::command().render_long_help().to_string();
        for heading in [
            SERVER,
            TLS,
            AUTH,
            LIMITS,
            HISTORY,
            SCALE_OUT,
            PUSHER,
            LOGGING,
            "Examples:",
        ] {
            assert!(help.contains(heading), "{heading} missing:\n{help}");
        }
        assert!(!help.to_lowercase().contains("seed"), "{help}");
        // Every option is under a topic, none in the catch-all list.
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            assert!(
                arg.get_help_heading().is_some() || id == "help" || id == "version",
                "--{id} has no --help section"
            );
        }
    }

    #[test]
    fn workers_default_to_the_cores_available_and_are_bounded() {
        assert_eq!(Config::default().workers, available_workers());
        assert!(available_workers() >= 1);
        let cli = Cli::load(["wshub", "--workers", "3"]).unwrap();
        assert_eq!(cli.into_config().unwrap().workers, 3);
        for refused in ["0", "1025", "many"] {
            let err = Cli::load(["wshub", "--workers", refused]).unwrap_err().to_string();
            assert!(err.contains("--workers") && err.contains("from 1 to 1024"), "{err}");
        }
        let (line, key, shown) = file_error("port = 9000\nworkers = 0\n");
        assert_eq!((line, key.as_deref()), (Some(2), Some("workers")));
        assert!(shown.contains("from 1 to 1024"), "{shown}");
        let cli = load_file("workers = 2\n").unwrap();
        assert_eq!(cli.into_config().unwrap().workers, 2);
    }

    #[test]
    fn history_memory_is_capped_by_default_and_the_cap_can_be_set() {
        assert_eq!(Config::default().history.max_bytes, 64 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wshub.toml");
        std::fs::write(&path, "history_max_bytes = \"8MiB\"\n").unwrap();
        let cli = Cli::load(["wshub", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(cli.into_config().unwrap().history.max_bytes, 8 << 20);
        let cli = Cli::try_parse_from(["wshub", "--history-max-bytes", "0"]).unwrap();
        let err = cli.into_config().unwrap_err().to_string();
        assert!(err.contains("--history-max-bytes"), "{err}");
    }

    #[test]
    fn no_pusher_app_is_configured_by_default() {
        assert!(Config::default().apps.is_empty());
    }

    #[test]
    fn apps_from_flags_have_client_events_on() {
        let cli = Cli::try_parse_from(["wshub", "--app", "1:key-one:s1", "--app", "2:key-two:s:2"]).unwrap();
        let apps = cli.into_config().unwrap().apps;
        assert_eq!(apps.len(), 2);
        let two = apps.by_key("key-two").unwrap();
        assert_eq!((two.id.as_str(), two.secret.as_str()), ("2", "s:2"));
        assert!(two.client_events);
        assert_eq!(apps.by_id("1").unwrap().key, "key-one");
    }

    #[test]
    fn a_bad_app_flag_is_named_without_its_secret() {
        for (spec, needle) in [
            ("1:key", "'1:…' must be ID:KEY:SECRET"),
            ("bad id:k:hunter2", "app id 'bad id' must be 1 to 64 of"),
            ("1:k/x:hunter2", "key 'k/x' must be"),
            ("1:k:", "'1:k:…' must be ID:KEY:SECRET"),
        ] {
            let cli = Cli::try_parse_from(["wshub", "--app", spec]).unwrap();
            let err = cli.into_config().unwrap_err().to_string();
            assert!(err.contains("--app: ") && err.contains(needle), "{spec}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let cli = Cli::try_parse_from(["wshub", "--app", "1:a:s", "--app", "1:b:s"]).unwrap();
        let err = cli.into_config().unwrap_err().to_string();
        assert!(err.contains("two apps have the id '1'"), "{err}");
    }

    /// One test for every source of apps, as `WSHUB_APPS` is the process's.
    #[test]
    fn apps_come_from_the_file_the_flags_and_the_variable() {
        let file = r#"port = 9000

[[apps]]
id = "shop"
key = "shop-key"
secret = "shop-secret"
client_events = true
max_connections = 500
max-client-events-per-second = 5
max_event_bytes = 20480
max_channels_per_event = 10
max-presence-members-per-channel = 500
subscription_count = true

[[apps.webhooks]]
url = "https://shop.example/pusher/webhooks"
event_types = ["channel_occupied", "channel_vacated"]

[[apps.webhooks]]
url = "http://127.0.0.1:9999/all"

[[apps]]
id = "blog"
key = "blog-key"
secret = "blog-secret"
"#;
        let cli = load_file(file).unwrap();
        assert_eq!(cli.port, 9000, "other keys still apply");
        let apps = cli.into_config().unwrap().apps;
        let shop = apps.by_id("shop").unwrap();
        assert!(shop.client_events);
        assert_eq!(shop.max_connections, Some(500));
        assert_eq!(shop.max_client_events_per_second, 5);
        assert_eq!((shop.max_event_bytes, shop.max_channels_per_event), (20480, 10));
        assert_eq!(shop.max_presence_members_per_channel, 500);
        assert!(shop.subscription_count);
        assert_eq!(shop.webhooks.len(), 2);
        assert_eq!(shop.webhooks[0].event_types, ["channel_occupied", "channel_vacated"]);
        assert!(shop.webhooks[1].wants("member_added"));
        let blog = apps.by_key("blog-key").unwrap();
        assert!(!blog.client_events, "Pusher's default in the file");
        assert!(!blog.subscription_count, "Pusher's default in the file");
        assert_eq!(blog.max_event_bytes, 10 * 1024);
        assert_eq!(
            blog.max_presence_members_per_channel, 100,
            "Pusher's default in the file"
        );

        // Flags add to the file's apps, as for every list.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wshub.toml");
        std::fs::write(&path, file).unwrap();
        let config = path.to_str().unwrap();
        let cli = Cli::load(["wshub", "--config", config, "--app", "cli:cli-key:s"]).unwrap();
        assert_eq!(cli.into_config().unwrap().apps.len(), 3);
        let cli = Cli::load(["wshub", "--config", config, "--app", "other:shop-key:s"]).unwrap();
        let err = cli.into_config().unwrap_err().to_string();
        assert!(
            err.contains("apps 'shop' and 'other' have the same key 'shop-key'"),
            "{err}"
        );

        // A bad app in the file is named with its line.
        let (line, key, shown) = file_error("[[apps]]\nid = \"shop\"\nkey = \"shop key\"\nsecret = \"hunter2\"\n");
        assert_eq!((line, key.as_deref()), (Some(1), Some("apps")));
        assert!(shown.contains("app 'shop': key 'shop key' must be"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let (line, key, shown) =
            file_error("port = 9000\n[[apps]]\nid = \"a\"\nkey = \"b\"\nsecret = \"c\"\nclient_event = true\n");
        assert_eq!(key.as_deref(), Some("apps"));
        assert!(line.is_some_and(|line| line >= 2), "{line:?}");
        assert!(shown.contains("unknown field `client_event`"), "{shown}");
        let (_, _, shown) = file_error("[[apps]]\nid = \"a\"\nkey = \"b\"\n");
        assert!(shown.contains("missing field `secret`"), "{shown}");
        let (_, _, shown) =
            file_error("[[apps]]\nid = \"a\"\nkey = \"b\"\nsecret = \"c\"\n[[apps.webhooks]]\nurl = \"nope\"\n");
        assert!(
            shown.contains("app 'a': webhook url 'nope' must be an http:// or https:// URL"),
            "{shown}"
        );

        // WSHUB_APPS wins over the file, as every variable does.
        std::env::set_var("WSHUB_APPS", "env-1:env-key-1:s1,env-2:env-key-2:s2");
        let loaded = Cli::load(["wshub", "--config", config]);
        std::env::remove_var("WSHUB_APPS");
        let apps = loaded.unwrap().into_config().unwrap().apps;
        let ids: Vec<&str> = apps.iter().map(|app| app.id.as_str()).collect();
        assert_eq!(ids, ["env-1", "env-2"]);
        assert!(apps.by_key("env-key-2").unwrap().client_events);
    }
}
