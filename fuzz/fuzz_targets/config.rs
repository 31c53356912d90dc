//! Fuzzes the settings: `Cli::load` then `into_config`, on every input twice:
//! as a command line (split on NUL bytes, after "wshub") and as the TOML
//! file named by `--config`. Errors are fine (that includes `--help` and
//! `--version`, which clap returns as errors); panics and exits are not.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wshub::Cli;

/// The file the TOML input is written to (one per process).
fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Settings must come from the input only, not from the environment
        // this runs in (scripts/fuzz itself sets WSHUB_SKIP_WEB_BUILD).
        let vars: Vec<OsString> = std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| name.to_string_lossy().starts_with("WSHUB_"))
            .collect();
        for name in vars {
            std::env::remove_var(name);
        }
        std::env::temp_dir().join(format!("wshub-fuzz-config-{}.toml", std::process::id()))
    })
}

fn load(args: Vec<OsString>) {
    if let Ok(cli) = Cli::load(args) {
        let _ = cli.into_config();
    }
}

fuzz_target!(|data: &[u8]| {
    let path = config_path();

    // As a command line. `--config` is dropped: the input could name
    // /dev/zero or a FIFO and make the run hang instead of testing anything;
    // the file path is covered below.
    let mut args = vec![OsString::from("wshub")];
    args.extend(
        data.split(|&b| b == 0)
            .filter(|arg| !arg.starts_with(b"--config"))
            .map(|arg| OsString::from_vec(arg.to_vec())),
    );
    load(args);

    // As the TOML file.
    std::fs::write(path, data).expect("write the config file");
    load(vec!["wshub".into(), "--config".into(), path.clone().into_os_string()]);
});
