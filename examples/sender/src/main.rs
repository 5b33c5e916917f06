//! The `sender` command: see the library's [`sender::run`] and `--help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let status = sender::run(
        std::env::args().skip(1).collect(),
        &|name| std::env::var(name).ok(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(status)
}
