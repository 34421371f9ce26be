//! Standard output and standard error of the commands. Everything they print goes through
//! [`print`] (the [`outln!`](crate::outln) and [`out!`](crate::out) macros) or [`eprint`]
//! ([`errln!`](crate::errln)); `clippy::print_stdout` and `clippy::print_stderr` are denied
//! elsewhere.
//!
//! A closed standard output — `berth get -o json | head -1` — ends the command at once and
//! quietly, as a program killed by SIGPIPE would end (coreutils, kubectl): exit status 141
//! (128 + SIGPIPE), nothing on standard error. Rust ignores SIGPIPE, so such a write fails with
//! `EPIPE`, on which `println!` panics ("failed printing to stdout: Broken pipe"). Any other
//! write error is one line on standard error and exit status 2. The same for a closed standard
//! error (`berth get 2>&1 | head -1`), whose other write errors are ignored (there is nowhere
//! left to report them).

use std::io::Write;

/// The exit status of a command whose standard output was closed: 128 + SIGPIPE, what a shell
/// shows for a program that SIGPIPE ended.
pub const EXIT_STDOUT_CLOSED: i32 = 141;

/// What to do after writing to standard output.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Written; go on.
    Ok,
    /// The reader went away: exit quietly with this status.
    Closed(i32),
    /// Another write error: report it and exit with this status.
    Failed(i32, String),
}

/// Writes `args` to `w` and flushes it, and says what the command does next.
pub fn write_to(w: &mut impl Write, args: std::fmt::Arguments<'_>) -> Written {
    match w.write_fmt(args).and_then(|()| w.flush()) {
        Ok(()) => Written::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Written::Closed(EXIT_STDOUT_CLOSED),
        Err(e) => Written::Failed(
            i32::from(crate::cli::EXIT_ERROR),
            format!("error: cannot write to standard output: {e}"),
        ),
    }
}

/// Writes `args` to standard output; ends the process when it cannot (see the module's
/// documentation).
pub fn print(args: std::fmt::Arguments<'_>) {
    match write_to(&mut std::io::stdout().lock(), args) {
        Written::Ok => {}
        Written::Closed(code) => std::process::exit(code),
        Written::Failed(code, message) => {
            // Standard error may be gone as well: nothing more to say then.
            let _ = writeln!(std::io::stderr(), "{message}");
            std::process::exit(code)
        }
    }
}

/// Writes `args` to standard error; a closed one ends the process quietly (exit status 141).
pub fn eprint(args: std::fmt::Arguments<'_>) {
    if let Written::Closed(code) = write_to(&mut std::io::stderr().lock(), args) {
        std::process::exit(code)
    }
}

/// `print!` through [`print`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(::std::format_args!($($arg)*))
    };
}

/// `println!` through [`print`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::print(::std::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::print(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// `eprintln!` through [`eprint`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::eprint(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose reader went away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A full disk.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_reader_is_a_quiet_exit_and_other_errors_are_reported() {
        let mut buf = Vec::new();
        assert_eq!(write_to(&mut buf, format_args!("a {}\n", 1)), Written::Ok);
        assert_eq!(buf, b"a 1\n");
        assert_eq!(
            write_to(&mut Closed, format_args!("x")),
            Written::Closed(141)
        );
        match write_to(&mut Full, format_args!("x")) {
            Written::Failed(2, m) => assert!(m.contains("standard output"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
