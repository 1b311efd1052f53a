//! `redcloud`: the command-line client. Parses arguments, runs one command through
//! the client library, prints human or `--json` output, and exits non-zero on failure.
//!
//! Exit codes: 0 success; 1 other failure (a local file, several files of which
//! some failed); 2 bad arguments; 3 no controller reachable (or its name does not
//! resolve); 4 not found; 5 cluster unavailable; 6 integrity check failed; 7 not
//! logged in; 8 permission denied; 9 already exists; 10 the cluster is degraded or
//! its answer partial (`cluster status`, `cluster wait`); 130 stopped by SIGINT
//! (Ctrl-C); 143 stopped by SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use redcloud_cli::human;
use redcloud_cli::{Client, ClientError, FileInfo};

/// Prints an informational line (not the data the command was asked for) on
/// standard output, unless `--quiet`.
macro_rules! info {
    ($quiet:expr, $($arg:tt)*) => {
        if !$quiet {
            println!($($arg)*);
        }
    };
}

/// RedCloud: a distributed store for plain-text books.
#[derive(Debug, Parser)]
#[command(name = "redcloud", version)]
struct Cli {
    /// Controller address(es): DNS names (every address behind a name is tried) or
    /// host:port, comma-separated. The port defaults to 8700.
    #[arg(
        long,
        global = true,
        env = "REDCLOUD_CONTROLLER",
        value_delimiter = ',',
        default_value = "controller"
    )]
    controller: Vec<String>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// Print only errors and the data asked for (no progress bars, no
    /// "uploaded ..." lines).
    #[arg(short, long, global = true)]
    quiet: bool,

    /// A root certificate (PEM) to trust for https:// controllers, besides the
    /// public web roots (a cluster's own CA, or a self-signed certificate).
    #[arg(long, global = true, env = "REDCLOUD_CA_FILE")]
    ca_file: Option<PathBuf>,

    /// Whose books `download`, `ls`, `stat` and `versions` address (a user name;
    /// default: your own, and for `ls` also everyone's public books).
    #[arg(long, global = true)]
    owner: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account, and log in as it.
    Register {
        username: String,
        /// Read the password from standard input (one line) instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log in; the token is kept in $XDG_CONFIG_HOME/redcloud/ (mode 0600).
    Login {
        username: String,
        /// Read the password from standard input (one line) instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke the saved token (on every controller) and forget it here.
    Logout,
    /// Show who the saved token belongs to.
    Whoami,
    /// Store one or more files (a new version if the name exists). With several
    /// files, one that fails does not stop the others; a summary lists failures.
    Upload {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Name to store under (only with a single file; default: the file's base name).
        #[arg(long)]
        name: Option<String>,
        /// Make the book readable by everyone.
        #[arg(long)]
        public: bool,
        /// Upload every regular file under the directories given, each named by its
        /// path relative to the directory (`a/b.txt`); symbolic links are skipped.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Fetch one or more files, checking each one's SHA-256.
    Download {
        #[arg(required = true)]
        names: Vec<String>,
        /// Where to write it (default: the name's base name in the current directory;
        /// `-` for stdout). With several names: a directory to write them into.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// A version id from `stat` (default: the current version; one name only).
        #[arg(long)]
        version: Option<String>,
    },
    /// Write a book to standard output as it arrives (any size, in bounded memory).
    Cat {
        name: String,
        /// A version id from `stat` or `versions` (default: the current version).
        #[arg(long)]
        version: Option<String>,
    },
    /// List stored files.
    Ls {
        /// Only names starting with this.
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Delete a file (every version).
    Rm { name: String },
    /// List every version of a file (current, earlier, deleted).
    Versions { name: String },
    /// Show a file's chunks and which chunkservers hold each.
    Stat {
        name: String,
        #[arg(long)]
        version: Option<String>,
    },
    /// Search the text of every stored book (ranked by BM25, with snippets).
    Search {
        /// Words (all must occur), "quoted phrases" and prefix*; case and accents are folded.
        #[arg(required = true)]
        query: Vec<String>,
        /// Only books whose author contains these words.
        #[arg(long)]
        author: Option<String>,
        /// Only books in this language (e.g. French or fr).
        #[arg(long)]
        lang: Option<String>,
        /// Only books whose title contains these words.
        #[arg(long)]
        title: Option<String>,
        /// At most this many results (1-100).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
    },
    /// Fetch books from elsewhere and store them.
    Ingest {
        #[command(subcommand)]
        source: IngestSource,
    },
    /// Cluster commands.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Print a shell completion script, e.g. `redcloud completions bash >
    /// /etc/bash_completion.d/redcloud`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), e.g. `redcloud man | man -l -`.
    Man,
}

#[derive(Debug, Subcommand)]
enum IngestSource {
    /// Plain-text books by ebook number from a Project Gutenberg mirror, stored as pgID.txt.
    Gutenberg {
        /// Ebook numbers, e.g. 11 2701.
        #[arg(required = true)]
        ids: Vec<u64>,
        /// The mirror's base URL.
        #[arg(long, env = "REDCLOUD_GUTENBERG_MIRROR", default_value = redcloud_cli::ingest::DEFAULT_MIRROR)]
        mirror: String,
        /// Where a book is under the mirror; {id} is replaced by the ebook number.
        #[arg(long, env = "REDCLOUD_GUTENBERG_LAYOUT", default_value = redcloud_cli::ingest::DEFAULT_LAYOUT)]
        layout: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Controllers, chunkservers, health and replication backlog. Exits 10 when the
    /// cluster is degraded (a node down, chunks lost or under-replicated) or the
    /// answer partial.
    Status,
    /// Waits until the cluster is healthy (as `cluster status` judges it); exits
    /// 10 saying what is still unhealthy if it is not within --timeout.
    Wait {
        /// Wait for a healthy cluster (the only condition there is, for now).
        #[arg(long, required = true)]
        healthy: bool,
        /// How long to wait at most: 30s, 2m, 500ms, 1h...
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Removes a controller or chunkserver that is gone for good, so garbage
    /// collection stops waiting for it. Forgetting a node that is still alive is
    /// refused unless --force: deletes it has not seen may later be undone on it,
    /// and chunks only it references may be collected.
    Forget {
        /// The node id (as `cluster status` shows it).
        node_id: String,
        /// Forget it even though it was heard from recently.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redcloud: error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        // Installed before the command starts: in a container the CLI is PID 1,
        // which the kernel gives no default action for SIGINT and SIGTERM.
        let stop = interrupted();
        tokio::pin!(stop);
        tokio::select! {
            r = run(cli) => match r {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("redcloud: error: {e}");
                    e.exit_code()
                }
            },
            // The command's future is dropped here: its connections close, and a
            // download's partial file is left behind only if it was mid-write.
            (code, name) = &mut stop => {
                eprintln!("redcloud: stopped by {name}");
                code
            }
        }
    });
    // Blocking work (a password prompt, a file read) is not waited for.
    rt.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

/// Resolves on the first SIGINT (exit code 130) or SIGTERM (143). The handlers are
/// installed when this is called, not when it is first polled.
fn interrupted() -> impl std::future::Future<Output = (u8, &'static str)> {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => (130, "SIGINT"),
                _ = term.recv() => (143, "SIGTERM"),
            },
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("redcloud: warning: cannot handle signals: {e}");
                std::future::pending().await
            }
        }
    }
}

/// Whether to colour text on a stream: only on a terminal, and never when
/// `NO_COLOR` is set to anything non-empty (<https://no-color.org>).
fn colour(no_color: Option<std::ffi::OsString>, terminal: bool) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    // Commands that need no controller.
    match &cli.command {
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(*shell, &mut Cli::command(), "redcloud", &mut out);
            return Ok(());
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| ClientError::io("the manual page", e))?;
            use std::io::Write;
            return std::io::stdout()
                .write_all(&out)
                .map_err(|e| ClientError::io("stdout", e));
        }
        _ => {}
    }
    // Every argument is checked before connecting anywhere: a mistake exits at
    // once, whatever the network does.
    check_names(&cli.command)?;
    let uploads = match &cli.command {
        Command::Upload {
            files,
            name,
            recursive,
            ..
        } => Some(plan_uploads(files, name.as_deref(), *recursive)?),
        _ => None,
    };
    if let Command::Download {
        names,
        output,
        version,
    } = &cli.command
        && names.len() > 1
    {
        if version.is_some() {
            return Err(ClientError::InvalidArgument(
                "--version can only be used with a single name".into(),
            ));
        }
        if let Some(dir) = output
            && !dir.is_dir()
        {
            return Err(ClientError::InvalidArgument(format!(
                "with several names, -o must be an existing directory: {}",
                dir.display()
            )));
        }
    }
    // Check the mirror before connecting anywhere (bad arguments exit 2 first).
    let mirror = match &cli.command {
        Command::Ingest {
            source: IngestSource::Gutenberg { mirror, layout, .. },
        } => Some(redcloud_cli::ingest::Mirror::new(mirror, layout)?),
        _ => None,
    };
    // The password is read before connecting (a prompt must not wait on the network),
    // on a blocking thread so that Ctrl-C still stops the CLI at the prompt.
    let ask = match &cli.command {
        Command::Register {
            password_stdin,
            username,
        } => Some((*password_stdin, true, username.clone())),
        Command::Login {
            password_stdin,
            username,
        } => Some((*password_stdin, false, username.clone())),
        _ => None,
    };
    let password = match ask {
        Some((stdin, choosing, user)) => Some(
            tokio::task::spawn_blocking(move || read_password(stdin, choosing, &user))
                .await
                .map_err(|e| ClientError::io("the terminal", std::io::Error::other(e)))??,
        ),
        None => None,
    };
    let ca = match &cli.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| ClientError::io(p.display(), e))?),
        None => None,
    };
    if let Command::Cluster {
        command: ClusterCommand::Wait { timeout, .. },
    } = &cli.command
    {
        return wait_healthy(&cli, ca.as_deref(), *timeout).await;
    }
    let mut client = Client::connect_with_ca(&cli.controller, ca.as_deref()).await?;
    if password.is_some() && password_in_clear(client.controller(), client.is_tls()) {
        eprintln!(
            "warning: sending the password unencrypted to {} (use an https:// controller \
             address; controllers serve TLS with --tls-cert and --tls-key)",
            client.controller()
        );
    }
    if !matches!(
        cli.command,
        Command::Register { .. } | Command::Login { .. }
    ) {
        client.set_token(redcloud_cli::session::token()?.as_deref())?;
        if let Ok(Some(saved)) = redcloud_cli::session::load() {
            client.observe_clock(saved.clock);
        }
    }
    client.set_owner(cli.owner.as_deref());
    let json = cli.json;
    let quiet = cli.quiet;
    match cli.command {
        Command::Register { username, .. } => {
            let pw = password.unwrap_or_default();
            let r = client.register(&username, &pw).await?;
            let l = client.login(&username, &pw).await?;
            let saved = save_login(&l)?;
            if json {
                print_json(
                    &serde_json::json!({ "user_id": r.user_id, "username": l.username, "session": saved }),
                );
            } else {
                info!(quiet, "registered {} and logged in", l.username);
            }
        }
        Command::Login { username, .. } => {
            let pw = password.unwrap_or_default();
            let l = client.login(&username, &pw).await?;
            let saved = save_login(&l)?;
            if json {
                print_json(&serde_json::json!({
                    "user_id": l.user_id, "username": l.username,
                    "renamed_from": l.renamed_from, "expires_at_ms": l.expires_at_ms, "session": saved,
                }));
            } else {
                if !l.renamed_from.is_empty() {
                    eprintln!(
                        "note: the name {:?} was registered by someone else on another side of a network \
                         partition, earlier; it stays theirs. Your account and all its books are kept: \
                         you are now {:?} (log in with that name from now on)",
                        l.renamed_from, l.username
                    );
                }
                info!(
                    quiet,
                    "logged in as {} (token valid until {} UTC)",
                    l.username,
                    human::utc_minutes(l.expires_at_ms)
                );
            }
        }
        Command::Logout => {
            let had = redcloud_cli::session::token()?.is_some();
            let r = if had { client.logout().await } else { Ok(()) };
            redcloud_cli::session::remove()?;
            match r {
                Ok(()) | Err(ClientError::Unauthenticated(_)) => {}
                Err(e) => return Err(e),
            }
            if json {
                print_json(&serde_json::json!({ "logged_out": had }));
            } else if had {
                info!(quiet, "logged out");
            } else {
                info!(quiet, "not logged in");
            }
        }
        Command::Whoami => {
            if redcloud_cli::session::token()?.is_none() {
                return Err(ClientError::Unauthenticated(
                    "not logged in (run `redcloud login NAME`)".into(),
                ));
            }
            let w = client.whoami().await?;
            if json {
                print_json(&w);
            } else {
                println!("{}", w.username);
                if w.registered_as != w.username {
                    println!(
                        "(registered as {}, a name an earlier registration holds)",
                        w.registered_as
                    );
                }
            }
        }
        Command::Upload { public, .. } => {
            let plan = uploads.unwrap_or_default();
            let several = plan.files.len() > 1 || !plan.skipped.is_empty();
            let mut results = Vec::new();
            let mut failed: Vec<(String, ClientError)> = Vec::new();
            let mut bytes = 0;
            for (k, f) in plan.files.iter().enumerate() {
                let size = std::fs::metadata(&f.path).map_or(0, |m| m.len());
                let bar = progress_bar(json || quiet, size, &f.name);
                let b = bar.clone();
                let r = client
                    .upload_file(&f.path, &f.name, public, move |sent| b.set_position(sent))
                    .await;
                bar.finish_and_clear();
                let r = match r {
                    Ok(r) => r,
                    Err(e) if !several => return Err(e),
                    // The same for every file that follows: stop, counting them.
                    Err(
                        e @ (ClientError::Unreachable { .. } | ClientError::Unauthenticated(_)),
                    ) => {
                        eprintln!("redcloud: error: {}: {e}", f.name);
                        failed.push((f.name.clone(), e));
                        for rest in &plan.files[k + 1..] {
                            failed.push((
                                rest.name.clone(),
                                ClientError::SomeFailed("not tried (see above)".into()),
                            ));
                        }
                        break;
                    }
                    Err(e) => {
                        eprintln!("redcloud: error: {}: {e}", f.name);
                        failed.push((f.name.clone(), e));
                        continue;
                    }
                };
                redcloud_cli::session::keep_clock(client.causal_clock());
                let info = r.file.clone().unwrap_or_default();
                bytes += info.size;
                if !json {
                    info!(
                        quiet,
                        "uploaded {} ({}, {} chunk(s), on {} chunkserver(s)) version {}",
                        info.name,
                        human::size(info.size),
                        info.chunk_count,
                        r.replicas,
                        info.file_id
                    );
                }
                results.push(r);
            }
            if json {
                print_json(&results);
            }
            if several {
                let total = plan.files.len() + plan.skipped.len();
                if !json {
                    info!(
                        quiet,
                        "{} of {total} file(s) uploaded ({}), {} failed",
                        results.len(),
                        human::size(bytes),
                        failed.len() + plan.skipped.len()
                    );
                }
                if !failed.is_empty() || !plan.skipped.is_empty() {
                    eprintln!("failed:");
                    for (path, why) in &plan.skipped {
                        eprintln!("  {path}: {why}");
                    }
                    for (name, e) in &failed {
                        eprintln!("  {name}: {e}");
                    }
                    return Err(ClientError::SomeFailed(format!(
                        "{} of {total} file(s) not uploaded",
                        failed.len() + plan.skipped.len()
                    )));
                }
            }
        }
        Command::Download {
            names,
            output,
            version,
        } if names.len() > 1 => {
            let dir = output.unwrap_or_else(|| PathBuf::from("."));
            let mut results = Vec::new();
            for name in &names {
                let out = dir.join(base_name(Path::new(name))?);
                let bar = progress_bar(json || quiet, 0, name);
                let b = bar.clone();
                let info = client
                    .download_to(name, version.as_deref(), &out, move |got, total| {
                        b.set_length(total);
                        b.set_position(got);
                    })
                    .await;
                bar.finish_and_clear();
                let info = info?;
                if !json {
                    info!(
                        quiet,
                        "downloaded {} ({}, sha256 verified) to {}",
                        info.name,
                        human::size(info.size),
                        out.display()
                    );
                }
                results.push(serde_json::json!({ "file": info, "path": out }));
            }
            if json {
                print_json(&results);
            }
        }
        Command::Download {
            names,
            output,
            version,
        } => {
            let name = names.into_iter().next().unwrap_or_default();
            let out = match output {
                Some(p) => p,
                None => PathBuf::from(base_name(Path::new(&name))?),
            };
            if out.as_os_str() == "-" {
                if let Some(info) = cat(&mut client, &name, version.as_deref()).await?
                    && json
                {
                    eprintln!("{}", serde_json::to_string(&info).unwrap_or_default());
                }
                return Ok(());
            }
            let bar = progress_bar(json || quiet, 0, &name);
            let b = bar.clone();
            let info = client
                .download_to(&name, version.as_deref(), &out, move |got, total| {
                    b.set_length(total);
                    b.set_position(got);
                })
                .await;
            bar.finish_and_clear();
            let info = info?;
            if json {
                print_json(&serde_json::json!({ "file": info, "path": out }));
            } else {
                info!(
                    quiet,
                    "downloaded {} ({}, sha256 verified) to {}",
                    info.name,
                    human::size(info.size),
                    out.display()
                );
            }
        }
        Command::Cat { name, version } => {
            if let Some(info) = cat(&mut client, &name, version.as_deref()).await?
                && json
            {
                eprintln!("{}", serde_json::to_string(&info).unwrap_or_default());
            }
        }
        Command::Ls { prefix } => {
            // Printed a page at a time as pages arrive: any number of books in
            // bounded memory, the first lines at once.
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut count = 0usize;
            let mut failed: Option<std::io::Error> = None;
            client
                .list_pages(&prefix, |page| {
                    if failed.is_some() {
                        return;
                    }
                    let r = (|| -> std::io::Result<()> {
                        for f in &page {
                            if json {
                                let sep = if count == 0 { "[\n" } else { ",\n" };
                                let item = serde_json::to_string_pretty(f)
                                    .map_err(std::io::Error::other)?;
                                write!(out, "{sep}{}", indent(&item))?;
                            } else {
                                if count == 0 {
                                    writeln!(
                                        out,
                                        "{:>10}  {:<16}  {:>6}  {:<36}  NAME",
                                        "SIZE", "UPLOADED (UTC)", "CHUNKS", "VERSION"
                                    )?;
                                }
                                writeln!(
                                    out,
                                    "{:>10}  {:<16}  {:>6}  {:<36}  {}",
                                    human::size(f.size),
                                    human::utc_minutes(f.created_at_ms),
                                    f.chunk_count,
                                    f.file_id,
                                    f.name
                                )?;
                            }
                            count += 1;
                        }
                        out.flush()
                    })();
                    failed = r.err();
                })
                .await?;
            let r = match failed {
                Some(e) => Err(e),
                None if json && count == 0 => writeln!(out, "[]"),
                None if json => writeln!(out, "\n]"),
                None if count == 0 => writeln!(out, "no files"),
                None => Ok(()),
            };
            match r.and_then(|_| out.flush()) {
                // `redcloud ls | head`: the reader has seen enough.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(ClientError::io("stdout", e)),
                Ok(()) => {}
            }
        }
        Command::Rm { name } => {
            let n = client.delete(&name).await?;
            redcloud_cli::session::keep_clock(client.causal_clock());
            if json {
                print_json(&serde_json::json!({ "name": name, "versions_deleted": n }));
            } else {
                info!(quiet, "deleted {name} ({n} version(s))");
            }
        }
        Command::Versions { name } => {
            let list = client.versions(&name).await?;
            if json {
                print_json(&list);
            } else {
                println!(
                    "{:<36}  {:>10}  {:<16}  {:<8}  ORIGIN",
                    "VERSION", "SIZE", "UPLOADED (UTC)", "STATE"
                );
                for v in &list {
                    let f = v.file.clone().unwrap_or_default();
                    let state = if v.current {
                        "current"
                    } else if v.deleted {
                        "deleted"
                    } else {
                        "earlier"
                    };
                    println!(
                        "{:<36}  {:>10}  {:<16}  {:<8}  {}",
                        f.file_id,
                        human::size(f.size),
                        human::utc_minutes(f.created_at_ms),
                        state,
                        v.origin
                    );
                }
            }
        }
        Command::Stat { name, version } => {
            let s = client.stat(&name, version.as_deref()).await?;
            if json {
                print_json(&s);
            } else {
                let f: FileInfo = s.file.clone().unwrap_or_default();
                println!("name:     {}", f.name);
                println!("version:  {}", f.file_id);
                println!("size:     {} ({} bytes)", human::size(f.size), f.size);
                println!("uploaded: {} UTC", human::utc_minutes(f.created_at_ms));
                println!("sha256:   {}", f.sha256);
                println!(
                    "chunks:   {} of up to {} bytes",
                    f.chunk_count, f.chunk_size
                );
                for c in &s.chunks {
                    let holders: Vec<String> = c
                        .replicas
                        .iter()
                        .map(|r| format!("{}{}", r.node_id, if r.healthy { "" } else { " (down)" }))
                        .collect();
                    println!(
                        "  #{:<4} {} {:>9} bytes  {} cop{}: {}",
                        c.index,
                        &c.chunk_id[..16],
                        c.size,
                        holders.len(),
                        if holders.len() == 1 { "y" } else { "ies" },
                        holders.join(", ")
                    );
                }
            }
        }
        Command::Search {
            query,
            author,
            lang,
            title,
            limit,
        } => {
            let r = client
                .search(redcloud_cli::pb::SearchRequest {
                    query: query.join(" "),
                    author: author.unwrap_or_default(),
                    language: lang.unwrap_or_default(),
                    title: title.unwrap_or_default(),
                    limit,
                })
                .await?;
            let mark = |s: &str, on: &str, off: &str| {
                s.replace('\u{2}', on)
                    .replace('\u{3}', off)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            if json {
                let hits: Vec<serde_json::Value> = r
                    .hits
                    .iter()
                    .map(|h| {
                        serde_json::json!({
                            "rank": h.rank, "name": h.name, "file_id": h.file_id,
                            "title": h.title, "author": h.author, "language": h.language,
                            "score": h.score, "snippet": mark(&h.snippet, "**", "**"),
                        })
                    })
                    .collect();
                print_json(&serde_json::json!({
                    "hits": hits,
                    "indexed_books": r.indexed_books,
                    "pending_books": r.pending_books,
                }));
            } else {
                use std::io::IsTerminal;
                let (on, off) = if colour(
                    std::env::var_os("NO_COLOR"),
                    std::io::stdout().is_terminal(),
                ) {
                    ("\x1b[1m", "\x1b[0m")
                } else {
                    ("[", "]")
                };
                if r.hits.is_empty() {
                    println!("no matches");
                }
                for h in &r.hits {
                    let author = if h.author.is_empty() {
                        "unknown author"
                    } else {
                        &h.author
                    };
                    println!(
                        "{:>3}. {} — {} ({}) [{}] score {:.3}",
                        h.rank, h.title, author, h.name, h.language, h.score
                    );
                    println!("     {}", mark(&h.snippet, on, off));
                }
                if r.pending_books > 0 {
                    println!(
                        "({} book(s) not indexed yet on this controller; results may be incomplete)",
                        r.pending_books
                    );
                }
            }
        }
        Command::Ingest {
            source: IngestSource::Gutenberg { ids, .. },
        } => {
            let Some(mirror) = mirror else {
                return Err(ClientError::InvalidArgument("no mirror".into()));
            };
            let mut results = Vec::new();
            let mut first_error = None;
            let several = ids.len() > 1;
            for id in ids {
                let name = redcloud_cli::ingest::book_name(id);
                let stored = match mirror.fetch(id).await {
                    Ok(bytes) => client.upload_bytes(bytes, &name, true).await,
                    Err(e) => Err(e),
                };
                match stored {
                    Ok(r) => {
                        redcloud_cli::session::keep_clock(client.causal_clock());
                        let f = r.file.clone().unwrap_or_default();
                        if !json {
                            info!(
                                quiet,
                                "ingested ebook #{id} as {} ({}, on {} chunkserver(s))",
                                f.name,
                                human::size(f.size),
                                r.replicas
                            );
                        }
                        results.push(
                            serde_json::json!({ "id": id, "file": f, "replicas": r.replicas }),
                        );
                    }
                    Err(e) => {
                        if several {
                            eprintln!("redcloud: error: ebook #{id}: {e}");
                        }
                        results.push(serde_json::json!({ "id": id, "error": e.to_string() }));
                        first_error.get_or_insert(e);
                    }
                }
            }
            if json {
                print_json(&results);
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        Command::Cluster {
            command: ClusterCommand::Forget { node_id, force },
        } => {
            if force {
                eprintln!(
                    "warning: forgetting {node_id} even if it is alive: collection stops waiting for it; \
                     deletes it has not seen may be undone on it, and chunks only it references may be deleted"
                );
            }
            let r = client.forget_node(&node_id, force).await?;
            if json {
                print_json(&r);
            } else {
                let mut what = Vec::new();
                if r.controller {
                    what.push("its controller membership".to_string());
                }
                if r.chunkserver_records > 0 {
                    what.push(format!("{} chunkserver record(s)", r.chunkserver_records));
                }
                if r.chunk_locations > 0 {
                    what.push(format!("{} chunk location(s)", r.chunk_locations));
                }
                info!(quiet, "forgot {node_id}: {}", what.join(", "));
            }
        }
        Command::Cluster {
            command: ClusterCommand::Status,
        } => {
            let s = client.cluster_status().await?;
            let problems = redcloud_cli::health::problems(&s);
            if json {
                print_json(&s);
            } else {
                println!(
                    "answered by controller {} ({})",
                    s.controller_id,
                    client.controller()
                );
                let partial = s.controllers_answered < s.controllers.len() as u32
                    || s.chunkservers_answered < s.chunkservers.len() as u32;
                if partial {
                    println!(
                        "PARTIAL ANSWER: {} of {} controllers and {} of {} chunkservers answered; figures for the others are the last known",
                        s.controllers_answered,
                        s.controllers.len(),
                        s.chunkservers_answered,
                        s.chunkservers.len()
                    );
                }
                println!(
                    "controllers: {} ({} answered)",
                    s.controllers.len(),
                    s.controllers_answered
                );
                for c in &s.controllers {
                    println!(
                        "  {}  {}  {}{}",
                        c.node_id,
                        c.grpc_address,
                        if c.reachable {
                            "up"
                        } else {
                            "DOWN (no answer)"
                        },
                        if c.is_self { "  (this one)" } else { "" }
                    );
                }
                let healthy = s.chunkservers.iter().filter(|c| c.healthy).count();
                println!(
                    "chunkservers: {} ({} healthy, {} answered)",
                    s.chunkservers.len(),
                    healthy,
                    s.chunkservers_answered
                );
                for c in &s.chunkservers {
                    let age = if c.last_heartbeat_age_ms == u64::MAX {
                        "never".to_string()
                    } else {
                        format!("{} ago", human::age(c.last_heartbeat_age_ms))
                    };
                    println!(
                        "  {}  {}  {}  {} chunks, {} used, heartbeat {}",
                        c.node_id,
                        c.grpc_address,
                        match (c.healthy, c.answered) {
                            (true, true) => "healthy",
                            (true, false) => "healthy (no answer just now)",
                            (false, true) => "FAILED (answers, but no heartbeat)",
                            (false, false) => "FAILED",
                        },
                        c.chunk_count,
                        human::size(c.used_bytes),
                        age
                    );
                }
                println!(
                    "files: {}  chunks: {}  under-replicated chunks: {}  (MIN_CHUNK_REPLICAS={})",
                    s.file_count, s.chunk_count, s.under_replicated_chunks, s.min_chunk_replicas
                );
                println!(
                    "repair backlog: {} missing cop{}{}",
                    s.repair_backlog,
                    if s.repair_backlog == 1 { "y" } else { "ies" },
                    if s.lost_chunks > 0 {
                        format!(
                            "; {} chunk(s) with no healthy copy (start the chunkservers that hold them)",
                            s.lost_chunks
                        )
                    } else {
                        String::new()
                    }
                );
                println!(
                    "state digest: {}  (controllers that have converged show the same digest)",
                    s.state_digest
                );
                if s.clock_skew_ms.abs() > 1_000 {
                    println!(
                        "clock: this controller's clock is {:.1} s {} its peers' (timestamps follow the cluster's time)",
                        s.clock_skew_ms.abs() as f64 / 1000.0,
                        if s.clock_skew_ms > 0 {
                            "ahead of"
                        } else {
                            "behind"
                        }
                    );
                }
                if s.records_held_clock_ahead > 0 {
                    println!(
                        "held back: {} record(s) from peers stamped too far ahead of this controller's clock",
                        s.records_held_clock_ahead
                    );
                }
                if !s.workers.is_empty() {
                    println!("workers:");
                    for w in &s.workers {
                        let err = if w.last_error.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; last error {} ago: {}",
                                human::age(w.last_error_age_ms),
                                w.last_error
                            )
                        };
                        println!(
                            "  {:<20} {:<9} {} units, {} failed{err}",
                            w.name, w.state, w.units, w.errors
                        );
                    }
                }
                if s.gc_waits.is_empty() {
                    println!("garbage collection: waiting for nothing");
                } else {
                    println!("garbage collection waits for:");
                    for w in &s.gc_waits {
                        println!(
                            "  {}: {}: {} (since {} UTC)",
                            w.collector,
                            w.node_id,
                            w.reason,
                            human::utc_minutes(w.since_ms)
                        );
                    }
                }
                if problems.is_empty() {
                    println!("health: healthy");
                } else {
                    println!("health: DEGRADED");
                    for p in &problems {
                        println!("  {p}");
                    }
                }
            }
            if !problems.is_empty() {
                return Err(ClientError::Unhealthy(problems.join("; ")));
            }
        }
        // Answered before connecting.
        Command::Completions { .. }
        | Command::Man
        | Command::Cluster {
            command: ClusterCommand::Wait { .. },
        } => {}
    }
    Ok(())
}

/// What `upload` stores: the files given, and with `-r` every file under the
/// directories given; entries of those directories that could not be read.
#[derive(Default)]
struct UploadPlan {
    files: Vec<redcloud_cli::walk::Found>,
    skipped: Vec<(String, String)>,
}

/// Checks `upload`'s arguments without connecting: every file exists and is
/// readable, a directory only with `-r`, every name is one the cluster accepts.
fn plan_uploads(
    paths: &[PathBuf],
    name: Option<&str>,
    recursive: bool,
) -> Result<UploadPlan, ClientError> {
    if name.is_some() && (paths.len() > 1 || recursive) {
        return Err(ClientError::InvalidArgument(
            "--name can only be used with a single file".into(),
        ));
    }
    let mut plan = UploadPlan::default();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| ClientError::io(path.display(), e))?;
        if meta.is_dir() {
            if !recursive {
                return Err(ClientError::InvalidArgument(format!(
                    "{} is a directory (upload -r uploads every file under it)",
                    path.display()
                )));
            }
            let walk = redcloud_cli::walk::files_under(path)?;
            plan.files.extend(walk.files);
            plan.skipped.extend(walk.skipped);
        } else {
            std::fs::File::open(path).map_err(|e| ClientError::io(path.display(), e))?;
            let name = match name {
                Some(n) => n.to_string(),
                None => base_name(path)?,
            };
            plan.files.push(redcloud_cli::walk::Found {
                path: path.clone(),
                name,
            });
        }
    }
    for f in &plan.files {
        redcloud_common::names::check_name(&f.name)
            .map_err(|e| ClientError::InvalidArgument(format!("{}: {e}", f.path.display())))?;
    }
    if plan.files.is_empty() && plan.skipped.is_empty() {
        return Err(ClientError::InvalidArgument(
            "no files to upload under the directories given".into(),
        ));
    }
    Ok(plan)
}

/// Checks the book names a command was given, before connecting.
fn check_names(command: &Command) -> Result<(), ClientError> {
    let names: Vec<&String> = match command {
        Command::Download { names, .. } => names.iter().collect(),
        Command::Cat { name, .. }
        | Command::Rm { name }
        | Command::Versions { name }
        | Command::Stat { name, .. } => vec![name],
        _ => Vec::new(),
    };
    for n in names {
        redcloud_common::names::check_name(n)
            .map_err(|e| ClientError::InvalidArgument(format!("{n:?}: {e}")))?;
    }
    Ok(())
}

/// `cluster wait --healthy`: asks for the cluster's status every half second
/// (connecting again as needed: the cluster may still be starting) until it is
/// healthy or `timeout` has passed.
async fn wait_healthy(cli: &Cli, ca: Option<&[u8]>, timeout: Duration) -> Result<(), ClientError> {
    let start = tokio::time::Instant::now();
    let deadline = start + timeout;
    if !cli.quiet && !cli.json {
        eprintln!(
            "waiting up to {} for a healthy cluster",
            humantime::format_duration(timeout)
        );
    }
    let mut client: Option<Client> = None;
    let mut last = String::from("no answer yet");
    loop {
        let attempt = async {
            let c = match client.take() {
                Some(c) => c,
                None => Client::connect_with_ca(&cli.controller, ca).await?,
            };
            let mut c = c;
            let s = c.cluster_status().await;
            client = Some(c);
            s
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(s)) => {
                let problems = redcloud_cli::health::problems(&s);
                if problems.is_empty() {
                    let waited = start.elapsed();
                    if cli.json {
                        print_json(&serde_json::json!({
                            "healthy": true, "waited_ms": waited.as_millis() as u64,
                        }));
                    } else {
                        info!(
                            cli.quiet,
                            "healthy: {} controller(s), {} chunkserver(s) (after {})",
                            s.controllers.len(),
                            s.chunkservers.len(),
                            human::age(waited.as_millis() as u64)
                        );
                    }
                    return Ok(());
                }
                last = problems.join("; ");
            }
            // Mistakes in the arguments do not go away by waiting.
            Ok(Err(e @ ClientError::InvalidArgument(_))) => return Err(e),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            if cli.json {
                print_json(&serde_json::json!({ "healthy": false, "still": last }));
            }
            return Err(ClientError::Unhealthy(format!(
                "still not healthy after {}: {last}",
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep_until(deadline.min(now + Duration::from_millis(500))).await;
    }
}

/// Whether a password sent to the controller at `addr` would cross a network
/// unencrypted (not TLS, and not this machine's loopback).
fn password_in_clear(addr: &str, tls: bool) -> bool {
    !tls && !addr
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

/// Reads a password: a line of standard input, or a prompt on the terminal (twice
/// when choosing one).
fn read_password(stdin: bool, choosing: bool, user: &str) -> Result<String, ClientError> {
    if stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| ClientError::io("stdin", e))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no password on standard input".into(),
            ));
        }
        return Ok(pw);
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::InvalidArgument(
            "no terminal to ask for the password on: pass --password-stdin and pipe it in".into(),
        ));
    }
    let tty =
        |p: &str| rpassword::prompt_password(p).map_err(|e| ClientError::io("the terminal", e));
    let pw = tty(&format!("password for {user}: "))?;
    if choosing && tty("again: ")? != pw {
        return Err(ClientError::InvalidArgument(
            "the two passwords differ".into(),
        ));
    }
    Ok(pw)
}

/// Keeps the token `login` returned; returns where.
fn save_login(l: &redcloud_cli::pb::LoginResponse) -> Result<String, ClientError> {
    let p = redcloud_cli::session::save(&redcloud_cli::session::Saved {
        token: l.token.clone(),
        username: l.username.clone(),
        expires_at_ms: l.expires_at_ms,
        // The causal clock belongs to the person at this terminal, not the token.
        clock: redcloud_cli::session::load()
            .ok()
            .flatten()
            .map_or(0, |s| s.clock),
    })?;
    Ok(p.display().to_string())
}

fn base_name(path: &Path) -> Result<String, ClientError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            ClientError::InvalidArgument(format!("{} has no usable file name", path.display()))
        })
}

fn progress_bar(json: bool, len: u64, name: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// Streams a book to standard output as it arrives (bounded memory, any size).
/// Every chunk was verified before it was sent; the whole-file SHA-256 is
/// checked at the end, and a mismatch exits non-zero after the bytes went out.
/// `None`: the reader went away first (`redcloud cat book | head`), which is no
/// error.
async fn cat(
    client: &mut Client,
    name: &str,
    version: Option<&str>,
) -> Result<Option<FileInfo>, ClientError> {
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::io::stdout());
    let r = client
        .download_into(name, version, &mut out, |_, _| {})
        .await;
    let flushed = out.flush().await;
    match (r, flushed) {
        (Err(ClientError::Io { source, .. }), _) | (Ok(_), Err(source))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(None)
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(ClientError::io("stdout", e)),
        (Ok(info), Ok(())) => Ok(Some(info)),
    }
}

/// Indents every line of `s` by two spaces (an item inside a JSON array).
fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("redcloud: cannot format JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::password_in_clear;

    #[test]
    fn a_password_to_a_remote_plaintext_controller_is_flagged() {
        assert!(password_in_clear("10.0.0.5:8700", false));
        assert!(password_in_clear("[2001:db8::1]:8700", false));
        assert!(!password_in_clear("10.0.0.5:8700", true));
        assert!(!password_in_clear("127.0.0.1:8700", false));
        assert!(!password_in_clear("[::1]:8700", false));
    }

    #[test]
    fn colour_only_on_a_terminal_and_without_no_color() {
        use std::ffi::OsString;
        assert!(super::colour(None, true));
        assert!(!super::colour(None, false));
        assert!(!super::colour(Some(OsString::from("1")), true));
        assert!(super::colour(Some(OsString::new()), true));
    }
}
