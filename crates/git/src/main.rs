//! `git-remote-cairn`: git runs it for `cairn://` URLs (gitremote-helpers(7)).
//!
//! ```sh
//! git push cairn://<your key>/<repo> main     # publish: only the key's holder can
//! git clone cairn://<key>/<repo>              # from any peer holding the bundles
//! ```

use std::{io::Write, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || args[1] == "--help" || args[1] == "-h" {
        eprintln!(
            "git-remote-cairn: git's remote helper for cairn:// URLs; git runs it.\n\n\
             \x20 git push cairn://<your key>/<repo> main   publish under your key\n\
             \x20 git clone cairn://<key>/<repo>            clone from the swarm\n\
             \x20 git clone cairn://<document CID>           a snapshot\n\n\
             It runs `cairn` (beside it, or $CAIRN) against a running `cairn daemon`.\n\
             Formats and limits: docs/git-format.md"
        );
        return ExitCode::from(2);
    }
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let r = cairn_git::remote::Helper::new(&args[2]).and_then(|mut h| h.run(stdin, &mut stdout));
    let _ = stdout.flush();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: {e:#}");
            ExitCode::FAILURE
        }
    }
}
