//! Builds the web page (`web/`, Vite + React) and stages it in
//! `$OUT_DIR/web`, where `src/web.rs` embeds it into the binary.
//!
//! - `WSHUB_WEB_DIST=DIR` embeds an already built folder instead.
//! - `WSHUB_SKIP_WEB_BUILD=1` embeds a one-page placeholder (fast Rust-only
//!   builds); without it, a missing npm stops the build and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("web");
    let web = manifest.join("web");
    for path in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
        "tsconfig.app.json",
        "tsconfig.node.json",
    ] {
        println!("cargo:rerun-if-changed=web/{path}");
    }
    println!("cargo:rerun-if-env-changed=WSHUB_WEB_DIST");
    println!("cargo:rerun-if-env-changed=WSHUB_SKIP_WEB_BUILD");

    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("create OUT_DIR/web");

    if let Some(dist) = std::env::var_os("WSHUB_WEB_DIST") {
        copy_dir(Path::new(&dist), &out);
        return;
    }
    let skip = std::env::var("WSHUB_SKIP_WEB_BUILD").is_ok_and(|v| v == "1");
    if skip || !web.join("package.json").exists() {
        println!("cargo:warning=wshub: embedding a placeholder instead of the web page (WSHUB_SKIP_WEB_BUILD=1 or no web/package.json)");
        std::fs::write(out.join("index.html"), PLACEHOLDER).expect("write placeholder");
        return;
    }
    if Command::new("npm").arg("--version").output().is_err() {
        panic!(
            "\n\nwshub: building the web page needs Node.js (20 or newer) and npm, and `npm` was not found.\n\
             Install them (Debian: apt-get install nodejs npm), or build without the page: WSHUB_SKIP_WEB_BUILD=1 cargo build\n"
        );
    }
    let installed = web.join("node_modules/.package-lock.json");
    let lock = web.join("package-lock.json");
    if !installed.exists() || modified(&lock) > modified(&installed) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&web),
            "npm ci",
        );
    }
    run(
        Command::new("npm").args(["run", "build"]).current_dir(&web),
        "npm run build",
    );
    copy_dir(&web.join("dist"), &out);
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("wshub: cannot run {what}: {e}"));
    if !status.success() {
        panic!("\n\nwshub: `{what}` in web/ failed ({status}); see its output above.\n");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("wshub: cannot read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("read dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create dir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wshub</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem">
<h1>wshub</h1>
<p>This binary was built without its web page (WSHUB_SKIP_WEB_BUILD=1, or no web/ folder).
The WebSocket endpoints work: <code>wscat -c ws://HOST:PORT/echo</code> and <code>/ws</code> for chat.</p>
<p>To embed the page, install Node.js 20+ and npm and rebuild.</p>
</body></html>
"#;
