//! Quoting for POSIX shells. A command run over ssh reaches the remote side as one string that
//! the user's login shell parses again, so every argument in it is quoted with [`quote`] (or a
//! whole argv joined with [`join`]).
//!
//! The rules are those of the POSIX shell language (sh, dash, bash, ksh, zsh): inside single
//! quotes nothing is special, and a single quote itself is written `'\''`. Shells that parse
//! differently (fish, csh) are not supported as login shells; `paxbench hosts check` finds them.

use std::borrow::Cow;

/// `s` as one shell word that the shell turns back into exactly `s`. Words made only of
/// characters no shell treats specially are returned as they are; anything else is single
/// quoted. `s` must not contain NUL, which no shell word can hold.
pub fn quote(s: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./:,+@%".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// The words, each quoted, separated by spaces: a command line that runs exactly this argv.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| quote(w.as_ref()).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKY: &[&str] = &[
        "",
        "plain",
        "two words",
        "it's",
        "'",
        "''",
        "\"double\"",
        "$HOME",
        "${x:-y}",
        "`id`",
        "$(id)",
        "back\\slash",
        "new\nline",
        "tab\there",
        "*",
        "?",
        "[a]",
        "~",
        "~/x",
        "a=b",
        "-n",
        "; rm -rf /",
        "a|b&c>d<e",
        "!bang",
        "#hash",
        "{a,b}",
        "é ü 日本",
    ];

    #[test]
    fn plain_words_stay_as_they_are() {
        assert_eq!(quote("node-0.pem"), "node-0.pem");
        assert_eq!(quote("/home/u/.paxbench/bin"), "/home/u/.paxbench/bin");
        assert_eq!(quote("user@host:22"), "user@host:22");
        assert!(matches!(quote("abc"), Cow::Borrowed(_)));
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(
            quote("a=b"),
            "'a=b'",
            "an unquoted a=b would be an assignment"
        );
        assert_eq!(join(["echo", "a b", "$x"]), "echo 'a b' '$x'");
    }

    /// Every tricky word survives a real shell unchanged, alone and in one command line.
    #[test]
    fn a_real_shell_reads_back_every_word() {
        for shell in ["/bin/sh", "/bin/bash"] {
            if !std::path::Path::new(shell).exists() {
                continue;
            }
            let mut words = vec!["printf", "%s\\0"];
            words.extend_from_slice(TRICKY);
            let out = std::process::Command::new(shell)
                .arg("-c")
                .arg(join(&words))
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {out:?}");
            let got: Vec<&str> = std::str::from_utf8(&out.stdout)
                .unwrap()
                .split_terminator('\0')
                .collect();
            // printf drops nothing: the empty word prints an empty field.
            assert_eq!(got, TRICKY, "{shell}");
        }
    }
}
