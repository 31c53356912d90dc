//! `wshub-bench`: the command line over the library's modes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use wshub_bench::options::parse_duration;
use wshub_bench::pusher::api::ApiOptions;
use wshub_bench::pusher::fanout::{FanoutOptions, Publisher};
use wshub_bench::pusher::idle::IdleOptions;
use wshub_bench::pusher::{self, AppCreds};
use wshub_bench::threads::MAX_THREADS;
use wshub_bench::{
    broadcast, conns, echo, slow, summary, BroadcastOptions, Common, ConnsOptions, EchoOptions, Format, SlowOptions,
};

/// Load generator for WebSocket servers: echo, broadcast, idle connections, slow consumers.
///
/// Every run is bounded in time and count. Targets must be loopback addresses unless
/// --allow-remote is given.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Closed-loop echo: N connections, K messages in flight each.
    Echo {
        #[command(flatten)]
        common: CommonArgs,
        /// Connections.
        #[arg(short, long, default_value_t = 100)]
        connections: usize,
        /// Measured time (e.g. 10s, 500ms).
        #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Messages in flight per connection.
        #[arg(short = 'k', long, default_value_t = 1)]
        pipeline: usize,
        #[command(flatten)]
        payload: PayloadArgs,
    },
    /// Fan-out: N clients in a chat room, S senders, every client receives every message.
    Broadcast {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        room: RoomArgs,
        /// Total messages/s across senders; omitted: closed loop (each sender waits for its own
        /// previous message to come back).
        #[arg(short, long)]
        rate: Option<f64>,
    },
    /// Idle connections: open N, hold them, report connect rate and server RSS per connection.
    Conns {
        #[command(flatten)]
        common: CommonArgs,
        /// Connections (one process can hold about 15,000 here).
        #[arg(short, long, default_value_t = 1000)]
        connections: usize,
        /// How long to hold them open.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        hold: Duration,
        /// Upgrades in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Connections per source address 127.0.0.x (default: 90 % of the ephemeral ports).
        #[arg(long)]
        per_source_ip: Option<usize>,
        /// Index of the first connection, for several generator processes: e.g. 0, 15000,
        /// 30000, … so that each uses its own source addresses.
        #[arg(long, default_value_t = 0)]
        first_index: usize,
    },
    /// Slow consumers: K clients stop reading in a room where others read and senders send.
    Slow {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        room: RoomArgs,
        /// Clients (of --clients) that stop reading after the handshake.
        #[arg(long, default_value_t = 10)]
        stalled: usize,
        /// Total messages/s across senders; 0 means closed loop.
        #[arg(short, long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Pusher fan-out published through the signed HTTP API: N subscribers of a public channel.
    PusherFanoutApi {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        fanout: FanoutArgs,
    },
    /// Pusher fan-out by a client event on a private channel, from one more subscriber.
    PusherFanoutClient {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        fanout: FanoutArgs,
    },
    /// Signed HTTP API publishes per second over K keep-alive connections.
    PusherApi {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        app: AppArgs,
        /// Keep-alive HTTP connections, each a closed loop.
        #[arg(short = 'k', long, default_value_t = 4)]
        http_connections: usize,
        /// Subscribers of the channel (they count deliveries).
        #[arg(long, default_value_t = 5)]
        subscribers: usize,
        /// Publishing time.
        #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Time after publishing for the last deliveries.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        drain: Duration,
        /// Bytes of each event's data (at least 48).
        #[arg(short, long, default_value_t = 64)]
        size: usize,
    },
    /// Idle Pusher connections, each subscribed; server RSS per connection.
    PusherIdle {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        app: AppArgs,
        /// Connections.
        #[arg(short, long, default_value_t = 1000)]
        connections: usize,
        /// Channels they are spread over (round robin).
        #[arg(long, default_value_t = 1)]
        channels: usize,
        /// How long to hold them once subscribed.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        hold: Duration,
    },
    /// Combine JSON reports (`--json` output files) into results, a markdown table and a chart.
    Summarize {
        /// Directory of report files (*.json), one run each, labelled with --label.
        #[arg(long)]
        runs: PathBuf,
        /// Write all reports, with derived ratios, to this JSON file.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Write the chart to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Label of the server the others are compared with.
        #[arg(long, default_value = "wshub")]
        baseline: String,
    },
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// ws:// URL of the endpoint (e.g. ws://127.0.0.1:8080/echo or …/ws). broadcast also takes
    /// a comma-separated list: nodes of one cluster sharing the room; the clients are split evenly
    /// over them and the senders all go to the first.
    url: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Generator threads, each a current_thread runtime with its share of the connections
    /// (round robin, so senders too); 1 runs everything on one thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// Server process id: report its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server under test, copied into the report.
    #[arg(long)]
    label: Option<String>,
    /// Origin header to send.
    #[arg(long)]
    origin: Option<String>,
    /// No live progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct PayloadArgs {
    /// Payload bytes per message (at least 20 binary, 40 text) [default: 64; slow: 16384].
    #[arg(short, long)]
    size: Option<usize>,
    /// Payload type.
    #[arg(long, value_enum, default_value_t = FormatArg::Binary)]
    format: FormatArg,
}

#[derive(Args, Debug)]
struct RoomArgs {
    /// Clients in the room.
    #[arg(short, long, default_value_t = 100)]
    clients: usize,
    /// Clients that send (the first ones).
    #[arg(short = 'S', long, default_value_t = 10)]
    senders: usize,
    /// Sending time.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time allowed after sending for the last deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    #[command(flatten)]
    payload: PayloadArgs,
}

#[derive(Args, Debug)]
struct AppArgs {
    /// Pusher app id (the HTTP API's /apps/ID).
    #[arg(long, default_value = "app-id")]
    app_id: String,
    /// Pusher app key (the WebSocket's /app/KEY).
    #[arg(long, default_value = "app-key")]
    app_key: String,
    /// Pusher app secret (signs channel auth and HTTP API requests).
    #[arg(long, default_value = "app-secret")]
    app_secret: String,
}

impl AppArgs {
    fn creds(&self) -> AppCreds {
        AppCreds {
            id: self.app_id.clone(),
            key: self.app_key.clone(),
            secret: self.app_secret.clone(),
        }
    }
}

#[derive(Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Subscribers that receive.
    #[arg(short = 'n', long, default_value_t = 1000)]
    subscribers: usize,
    /// Events in flight (1: each publish waits for the previous event to reach everyone).
    #[arg(short, long, default_value_t = 1)]
    window: usize,
    /// Publishing time.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Bytes of each event's data (at least 48).
    #[arg(short, long, default_value_t = 64)]
    size: usize,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    Binary,
    Text,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Binary => Format::Binary,
            FormatArg::Text => Format::Text,
        }
    }
}

impl CommonArgs {
    fn common(&self) -> Common {
        Common {
            url: self.url.clone(),
            allow_remote: self.allow_remote,
            origin: self.origin.clone(),
            server_pid: self.server_pid,
            progress: !self.quiet,
            label: self.label.clone(),
            threads: self.threads,
        }
    }
}

fn main() -> std::process::ExitCode {
    match start(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wshub-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> anyhow::Result<()> {
    if let Mode::Summarize {
        runs,
        json_out,
        svg,
        baseline,
    } = &cli.mode
    {
        let table = summary::summarize(runs, json_out.as_deref(), svg.as_deref(), baseline)?;
        print!("{table}");
        return Ok(());
    }
    let threads = match &cli.mode {
        Mode::Echo { common, .. }
        | Mode::Broadcast { common, .. }
        | Mode::Conns { common, .. }
        | Mode::Slow { common, .. }
        | Mode::PusherFanoutApi { common, .. }
        | Mode::PusherFanoutClient { common, .. }
        | Mode::PusherApi { common, .. }
        | Mode::PusherIdle { common, .. } => common.threads,
        Mode::Summarize { .. } => 1,
    };
    anyhow::ensure!(
        (1..=MAX_THREADS).contains(&threads),
        "--threads must be 1 to {MAX_THREADS}"
    );
    if let Mode::Echo { common, .. }
    | Mode::Conns { common, .. }
    | Mode::Slow { common, .. }
    | Mode::PusherFanoutApi { common, .. }
    | Mode::PusherFanoutClient { common, .. }
    | Mode::PusherApi { common, .. }
    | Mode::PusherIdle { common, .. } = &cli.mode
    {
        anyhow::ensure!(
            !common.url.contains(','),
            "only broadcast accepts several comma-separated URLs"
        );
    }
    // The coordinator's runtime; with --threads above 1 the connections run on threads of
    // their own (wshub_bench::threads).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(cli.mode))
}

async fn run(mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::Echo {
            common,
            connections,
            duration,
            pipeline,
            payload,
        } => {
            let report = echo::run(EchoOptions {
                common: common.common(),
                connections,
                duration,
                pipeline,
                size: payload.size.unwrap_or(64),
                format: payload.format.into(),
            })
            .await?;
            print_report(common.json, &report, || report.human())
        }
        Mode::Broadcast { common, room, rate } => {
            let report = broadcast::run(BroadcastOptions {
                common: common.common(),
                clients: room.clients,
                senders: room.senders,
                rate,
                duration: room.duration,
                drain: room.drain,
                size: room.payload.size.unwrap_or(64),
                format: room.payload.format.into(),
            })
            .await?;
            print_report(common.json, &report, || report.human())
        }
        Mode::Conns {
            common,
            connections,
            hold,
            concurrency,
            per_source_ip,
            first_index,
        } => {
            let report = conns::run(ConnsOptions {
                common: common.common(),
                connections,
                hold,
                concurrency,
                per_source_ip,
                first_index,
            })
            .await?;
            print_report(common.json, &report, || report.human())
        }
        Mode::Slow {
            common,
            room,
            stalled,
            rate,
        } => {
            let report = slow::run(SlowOptions {
                common: common.common(),
                clients: room.clients,
                stalled,
                senders: room.senders,
                rate: (rate > 0.0).then_some(rate),
                duration: room.duration,
                drain: room.drain,
                size: room.payload.size.unwrap_or(16 * 1024),
                format: room.payload.format.into(),
            })
            .await?;
            print_report(common.json, &report, || report.human())
        }
        Mode::PusherFanoutApi { common, fanout } => run_fanout(common, fanout, Publisher::Api).await,
        Mode::PusherFanoutClient { common, fanout } => run_fanout(common, fanout, Publisher::Client).await,
        Mode::PusherApi {
            common,
            app,
            http_connections,
            subscribers,
            duration,
            drain,
            size,
        } => {
            let report = pusher::api::run(ApiOptions {
                common: common.common(),
                app: app.creds(),
                http_connections,
                subscribers,
                duration,
                drain,
                size,
            })
            .await?;
            print_report(common.json, &report, || report.human())
        }
        Mode::PusherIdle {
            common,
            app,
            connections,
            channels,
            hold,
        } => {
            let report = pusher::idle::run(IdleOptions {
                common: common.common(),
                app: app.creds(),
                connections,
                channels,
                hold,
            })
            .await?;
            print_report(common.json, &report, || report.human())
        }
        Mode::Summarize { .. } => unreachable!("handled before the runtime starts"),
    }
}

async fn run_fanout(common: CommonArgs, fanout: FanoutArgs, publisher: Publisher) -> anyhow::Result<()> {
    let report = pusher::fanout::run(FanoutOptions {
        common: common.common(),
        app: fanout.app.creds(),
        publisher,
        subscribers: fanout.subscribers,
        window: fanout.window,
        duration: fanout.duration,
        size: fanout.size,
    })
    .await?;
    print_report(common.json, &report, || report.human())
}

fn print_report<R: Serialize>(json: bool, report: &R, human: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}
