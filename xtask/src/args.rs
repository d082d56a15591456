//! Typed values of xtask's command line, checked where clap parses them: a wrong one is
//! refused before anything is built, with what was expected. Also the flags several
//! commands share ([`Signing`]) and [`parse_words`] for a library caller that has a
//! command's words rather than a whole command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueHint;

use crate::build;

/// `--system`: a system's name (`systems/NAME.toml`) or a path to a `.toml`, which must
/// exist. Keeps the text as given: [`build::system_path`] resolves it.
pub fn system(text: &str) -> Result<String, String> {
    let path = build::system_path(text);
    if path.is_file() {
        return Ok(text.to_string());
    }
    if text.ends_with(".toml") {
        return Err(format!("{}: no such file (expected a system description .toml)", path.display()));
    }
    let known = system_names();
    let guess = closest(text, &known).map_or(String::new(), |c| format!("; did you mean `{c}`?"));
    Err(format!(
        "no system named `{text}` (no {}){guess}\n  systems: {}; or give a path to a .toml",
        path.display(),
        known.join(", ")
    ))
}

/// The systems of `systems/`, by name, sorted.
pub fn system_names() -> Vec<String> {
    let dir = build::root().join("systems");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_string)).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The name of `names` most like `text`, if any is close: the measure and threshold
/// clap uses for its own "a similar argument exists".
fn closest<'a>(text: &str, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::jaro(text, n), n))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n.as_str())
}

/// `--keys`: a directory holding keys made by `cargo xtask keygen` (`<role>-<n>.key`, or
/// `.pub` for keys held elsewhere). Which roles it must hold depends on the system, and
/// is checked when the keys are loaded.
pub fn key_dir(text: &str) -> Result<PathBuf, String> {
    const EXPECTED: &str = "expected a directory of keys made by `cargo xtask keygen --out DIR`";
    let entries = std::fs::read_dir(text).map_err(|e| format!("{text}: {e}; {EXPECTED}"))?;
    let holds_keys = entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".key") || name.ends_with(".pub")
    });
    if holds_keys {
        Ok(PathBuf::from(text))
    } else {
        Err(format!("{text}: holds no .key or .pub files; {EXPECTED}"))
    }
}

/// `--seconds`: a duration in seconds, whole or not (`10`, `2.5`, `10s`).
/// A file that exists and can be handed to QEMU's loader (no comma, which QEMU's
/// option syntax would split at).
pub fn loadable_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if !path.is_file() {
        return Err(format!("{text} is not a file"));
    }
    if text.contains(',') {
        return Err(format!("{text}: QEMU cannot load a path with a comma in it; rename or link it"));
    }
    Ok(path)
}

pub fn seconds(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a number of seconds, such as 10 or 2.5, not `{text}`");
    let number: f64 = text.strip_suffix('s').unwrap_or(text).trim().parse().map_err(|_| bad())?;
    if number > 0.0 {
        Duration::try_from_secs_f64(number).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// How a build is signed: the flags of `build`, `run` and `dist`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Signing {
    /// Sign with the keys in DIR (made by `cargo xtask keygen`) instead of the
    /// development keys, whose seeds are published
    #[arg(long, value_name = "DIR", value_parser = key_dir, value_hint = ValueHint::DirPath)]
    pub keys: Option<PathBuf>,
    /// Build a production hypervisor: it refuses development-signed roots, and the
    /// build refuses development keys
    #[arg(long, requires = "keys")]
    pub production: bool,
}

impl Signing {
    pub fn options(&self) -> build::Options {
        build::Options { keys: self.keys.clone(), production: self.production }
    }
}

/// Parses a command's `words` (what follows the command's name) by the same declaration
/// as the command line; the error is clap's message.
pub fn parse_words<T: clap::Args>(command: &'static str, words: &[String]) -> Result<T, String> {
    let cmd = T::augment_args(clap::Command::new(command).no_binary_name(true));
    let matches = cmd.try_get_matches_from(words).map_err(|e| e.to_string())?;
    T::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// `A=B`: two TCP ports.
pub fn port_pair(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('=').ok_or_else(|| format!("`{s}` is not PORT=PORT (e.g. 8000=18000)"))?;
    let port = |p: &str| {
        p.trim().parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("`{p}` is not a TCP port (1..65535)"))
    };
    Ok((port(a)?, port(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_are_names_or_existing_paths() {
        assert_eq!(system("qemu-virt").as_deref(), Ok("qemu-virt"));
        let path = build::root().join("systems/broken/bad-size.toml");
        let path = path.to_str().expect("utf-8 path");
        assert_eq!(system(path).as_deref(), Ok(path));
        let err = system("rpi").unwrap_err();
        assert!(err.contains("no system named `rpi`") && err.contains("did you mean `rpi4`"), "{err}");
        assert!(err.contains("qemu-virt-bare"), "lists the systems: {err}");
        assert!(system("nowhere/missing.toml").unwrap_err().contains("no such file"));
    }

    #[test]
    fn seconds_are_positive_durations() {
        assert_eq!(seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds("3s"), Ok(Duration::from_secs(3)));
        for bad in ["", "ten", "-1", "0", "1e400", "NaN"] {
            assert!(seconds(bad).unwrap_err().contains("expected a number of seconds"), "{bad}");
        }
    }

    #[test]
    fn key_directories_must_hold_keys() {
        let dir = std::env::temp_dir().join(format!("septum-keydir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        let text = dir.to_str().expect("utf-8 path");
        assert!(key_dir(text).unwrap_err().contains("holds no .key or .pub files"));
        std::fs::write(dir.join("root-1.pub"), "00\n").expect("write");
        assert_eq!(key_dir(text), Ok(dir.clone()));
        assert!(key_dir(&format!("{text}/absent")).unwrap_err().contains("expected a directory of keys"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
