//! The `rotate` command: see the library's [`rotate::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let status = rotate::run(
        std::env::args().skip(1).collect(),
        &|name| std::env::var(name).ok(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(status)
}
