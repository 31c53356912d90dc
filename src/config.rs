//! Settings: command-line flags, `WSHUB_*` environment variables and an
//! optional TOML file, in that order of precedence, over the seed's defaults.
//!
//! One clap definition serves all three sources, so `wshub --help` always
//! lists every option with its default and variable: a file's entries are
//! turned into flags placed *before* the real ones (later flags win), and an
//! entry whose variable is set is skipped (the variable wins over the file).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use thiserror::Error;

use crate::auth::{AuthSource, Secret, TokenRules};
use crate::chat::ChatLimits;
use crate::history::{Backend, HistoryConfig};
use crate::ratelimit::RateLimits;

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
    /// The `--config` file is not valid TOML, or holds an unknown key.
    #[error("invalid config file {path}: {message}")]
    FileInvalid {
        /// The file named by `--config`.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Values that are each fine but do not work together.
    #[error("invalid settings: {0}")]
    Inconsistent(String),
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

/// The command line, as clap sees it. Field docs are the `--help` text.
#[derive(Debug, Parser)]
#[command(
    name = "wshub",
    version,
    about = "A real-time WebSocket server: echo, chat rooms, history and scale-out"
)]
#[command(args_override_self = true)]
pub struct Cli {
    /// TOML file with any of these options (keys as the long flag names, with - or _)
    #[arg(long, env = "WSHUB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// TCP port to listen on
    #[arg(long, env = "WSHUB_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to bind (all interfaces by default, as the seed)
    #[arg(long, env = "WSHUB_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Allowed page origin for WebSocket upgrades and CORS (repeatable; '*' allows any).
    /// Without it: pages on localhost, 127.0.0.1 and [::1]
    #[arg(
        long = "allowed-origin",
        env = "WSHUB_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,

    /// PEM certificate chain: serve https and wss only (needs --tls-key)
    #[arg(long, env = "WSHUB_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(long, env = "WSHUB_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve TLS with a freshly generated certificate for localhost (development only)
    #[arg(long, env = "WSHUB_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// Require a JWT signed with this HS256 secret on every WebSocket (prefer the variable:
    /// a flag shows in the process list)
    #[arg(
        long,
        env = "WSHUB_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,

    /// Require a JWT signed for this PEM public key (RSA: RS256.., EC: ES256/ES384, Ed25519)
    #[arg(long, env = "WSHUB_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// With tokens required: their `aud` claim must name this audience
    #[arg(long, env = "WSHUB_JWT_AUDIENCE", value_name = "NAME")]
    pub jwt_audience: Option<String>,

    /// With tokens required: their `iss` claim must be this issuer
    #[arg(long, env = "WSHUB_JWT_ISSUER", value_name = "NAME")]
    pub jwt_issuer: Option<String>,

    /// How often the server pings each client
    #[arg(long, env = "WSHUB_PING_INTERVAL", default_value = "54s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Close a client that sends nothing (not even a pong) for this long
    #[arg(long, env = "WSHUB_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// Close a client whose socket accepts no bytes for this long
    #[arg(long, env = "WSHUB_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// On SIGINT/SIGTERM, wait this long for clients to answer the 1001 close
    #[arg(long, env = "WSHUB_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest message accepted (all fragments together); larger ones get close 1009
    #[arg(long, env = "WSHUB_MAX_MESSAGE_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Bytes all unfinished messages may hold together; a connection whose message would pass it
    /// is closed with 1013 (at least --max-message-size)
    #[arg(long, env = "WSHUB_MAX_INCOMPLETE_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub max_incomplete_bytes: usize,

    /// Accept permessage-deflate (RFC 7692) from clients that offer it, always without context
    /// takeover, so an idle connection keeps no zlib state (--permessage-deflate=false: never)
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
    #[arg(long, env = "WSHUB_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Per-connection outbound queue bound in messages; a client beyond it is evicted (1008)
    #[arg(long, env = "WSHUB_MAX_QUEUE_MESSAGES", default_value_t = 1024)]
    pub max_queue_messages: usize,

    /// Per-connection outbound queue bound in bytes; a client beyond it is evicted (1008)
    #[arg(long, env = "WSHUB_MAX_QUEUE_BYTES", default_value = "4MiB", value_parser = parse_size)]
    pub max_queue_bytes: usize,

    /// Messages per second one connection may send on average (excess is dropped); 0: no limit
    #[arg(long, env = "WSHUB_RATE_MESSAGES", default_value_t = 50)]
    pub rate_messages: u32,

    /// Messages one connection may send at once before --rate-messages applies
    #[arg(long, env = "WSHUB_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,

    /// Message bytes per second one connection may send (burst: 1 s, at least one largest message); 0: no limit
    #[arg(long, env = "WSHUB_RATE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub rate_bytes: usize,

    /// Most simultaneous WebSocket connections from one IP address (HTTP 429 beyond); 0: no limit
    #[arg(long, env = "WSHUB_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Where chat history is kept: an SQLite file, memory, or nowhere
    #[arg(long, env = "WSHUB_HISTORY", value_enum, default_value_t = HistoryKind::Sqlite)]
    pub history: HistoryKind,

    /// The SQLite history file (WAL mode; created if missing)
    #[arg(
        long,
        env = "WSHUB_HISTORY_PATH",
        value_name = "FILE",
        default_value = "wshub.sqlite"
    )]
    pub history_path: PathBuf,

    /// Messages kept per room (older ones are dropped)
    #[arg(long, env = "WSHUB_HISTORY_MAX_MESSAGES", default_value_t = 10_000)]
    pub history_max_messages: usize,

    /// Age after which messages are dropped; 0s keeps them forever
    #[arg(long, env = "WSHUB_HISTORY_MAX_AGE", default_value = "7days", value_parser = parse_duration)]
    pub history_max_age: Duration,

    /// History writes are committed in batches this often: at most this much is lost on a crash
    #[arg(long, env = "WSHUB_HISTORY_COMMIT_INTERVAL", default_value = "50ms", value_parser = parse_duration)]
    pub history_commit_interval: Duration,

    /// Most bytes of history kept in memory over all rooms (memory store, SQLite's replay tail);
    /// beyond it the rooms that hold the most drop their oldest messages
    #[arg(long, env = "WSHUB_HISTORY_MAX_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub history_max_bytes: usize,

    /// Messages a wshub.v1 client receives when it joins a room
    #[arg(long, env = "WSHUB_JOIN_HISTORY", default_value_t = 50)]
    pub join_history: usize,

    /// Rooms one wshub.v1 connection may be in at once
    #[arg(long, env = "WSHUB_MAX_ROOMS_PER_CONN", default_value_t = 16)]
    pub max_rooms_per_conn: usize,

    /// Longest chat text accepted in wshub.v1 (longer gets an error frame)
    #[arg(long, env = "WSHUB_MAX_TEXT_SIZE", default_value = "4KiB", value_parser = parse_size)]
    pub max_text_size: usize,

    /// Bad wshub.v1 requests tolerated per connection before closing it with 1008
    #[arg(long, env = "WSHUB_MAX_BAD_REQUESTS", default_value_t = 10)]
    pub max_bad_requests: u32,

    /// Redis URL (redis://HOST:PORT/DB): share rooms, history and presence with other wshub nodes
    #[arg(long, env = "WSHUB_REDIS", value_name = "URL")]
    pub redis: Option<String>,

    /// This node's name in the cluster (presence, logs); default: a random one
    #[arg(long, env = "WSHUB_NODE_ID")]
    pub node_id: Option<String>,

    /// Log filter: error, warn, info, debug, trace, or a RUST_LOG-style directive (RUST_LOG wins)
    #[arg(long, env = "WSHUB_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log line format
    #[arg(long, env = "WSHUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
        let first = Cli::try_parse_from(&args)?;
        let Some(path) = first.config.clone() else {
            return Ok(first);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::FileUnreadable {
            path: path.clone(),
            source,
        })?;
        let file_args = file_to_args(&text).map_err(|message| ConfigError::FileInvalid {
            path: path.clone(),
            message,
        })?;
        let mut merged = Vec::with_capacity(args.len() + file_args.len());
        merged.extend(args.first().cloned());
        merged.extend(file_args);
        merged.extend(args.into_iter().skip(1));
        let matches = Cli::command()
            .try_get_matches_from(merged)
            .map_err(|e| ConfigError::FileInvalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(Cli::from_arg_matches(&matches)?)
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
        })
    }
}

/// Turns `key = value` entries into `--key value` flags, skipping keys whose
/// environment variable is set.
fn file_to_args(text: &str) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_owned())?;
    let command = Cli::command();
    let mut args = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| format!("unknown key '{key}' (see wshub --help)"))?;
        if arg.get_env().is_some_and(|name| std::env::var_os(name).is_some()) {
            continue;
        }
        let flag = format!("--{long}");
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for value in values {
            match value {
                toml::Value::Boolean(true) => args.push(flag.clone().into()),
                // A switch that is on by default needs its "false" spelt out.
                toml::Value::Boolean(false) if arg.get_action().takes_values() => {
                    args.push(format!("{flag}=false").into());
                }
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => {
                    args.push(flag.clone().into());
                    args.push(s.into());
                }
                toml::Value::Integer(i) => {
                    args.push(flag.clone().into());
                    args.push(i.to_string().into());
                }
                other => return Err(format!("key '{key}' has an unsupported value {other}")),
            }
        }
    }
    Ok(args)
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

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wshub.toml");
        std::fs::write(&path, "prot = 9000\n").unwrap();
        let err = Cli::load(["wshub", "--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'prot'"), "{err}");
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
}
