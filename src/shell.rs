//! What makes pareco fit the shell: completion scripts and the man page,
//! both made from the clap definitions of [`crate::cli`] (so they never
//! drift from the options), and whether output may be coloured.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::Cli;

/// Prints the completion script for `shell` on stdout.
pub(crate) fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "pareco", &mut script);
    print(&script)
}

/// Prints the man page on stdout: pareco(1) with, after the list of
/// subcommands, a section for each (its synopsis, description and
/// options), their own sections demoted to subsections.
pub(crate) fn print_man() -> ExitCode {
    match man_page() {
        Ok(page) => print(&page),
        Err(e) => {
            eprintln!("pareco: error: cannot render the man page: {e}");
            ExitCode::from(1)
        }
    }
}

fn man_page() -> std::io::Result<Vec<u8>> {
    let mut command = Cli::command();
    command.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_uppercase();
        writeln!(page, ".SH \"{name}\"")?;
        let man = clap_mangen::Man::new(sub.clone());
        let mut sections = Vec::new();
        man.render_synopsis_section(&mut sections)?;
        man.render_description_section(&mut sections)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut sections)?;
        }
        for line in String::from_utf8_lossy(&sections).lines() {
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(page, ".SS {heading}")?,
                None => writeln!(page, "{line}")?,
            }
        }
    }
    Ok(page)
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is no error.
fn print(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pareco: error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// May what goes to `stream` be coloured? Only on a terminal, and never
/// when `NO_COLOR` is set to anything but the empty string (no-color.org).
pub(crate) fn colour(stream: &impl IsTerminal) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    stream.is_terminal() && !no_color
}
