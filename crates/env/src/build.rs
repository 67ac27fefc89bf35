//! An environment from a set of apps: the union of their trees as symlinks into the app view.

use std::{collections::BTreeMap, path::Path};

use cairn_app::AppNode;
use cairn_store::{BlockSource, Cid};
use cairn_unixfs::{
    import::{file, tree, AddOptions, Added, BlockSink},
    resolve, Metadata, Node,
};
use serde::{Deserialize, Serialize};

use crate::EnvError;

/// Where an environment keeps what it is made of; no app may provide this name at its top.
const META_DIR: &str = ".cairn";

/// One installed app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    /// The app node's canonical CID.
    pub cid: String,
    /// Which app wins a path two provide: the lower number (default 5, as in Nix).
    pub priority: i32,
    /// The name (`k51…`) whose release list it was installed from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The version of that list it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `.cairn/manifest.json` of an environment: the installed apps, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub apps: Vec<Installed>,
}

impl Manifest {
    /// The manifest of environment `env`.
    pub fn read(src: &dyn BlockSource, env: &Cid) -> Result<Manifest, EnvError> {
        let cid = resolve::resolve(src, env, &[META_DIR, "manifest.json"])?;
        let mut bytes = Vec::new();
        cairn_unixfs::get::cat(src, &cid, &mut bytes, &())?;
        serde_json::from_slice(&bytes)
            .map_err(|e| EnvError::Refused(format!("{env}: not a cairn environment: {e}")))
    }

    /// The entry installed as `name`.
    pub fn get(&self, name: &str) -> Option<&Installed> {
        self.apps.iter().find(|a| a.name == name)
    }
}

/// Two apps of one priority that provide the same path.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} is provided by both {a} ({a_cid}) and {b} ({b_cid}); give one a priority \
     (`cairn env install CID --priority N`: the lower number wins, the default is 5)"
)]
pub struct Conflict {
    pub path: String,
    pub a: String,
    pub a_cid: String,
    pub b: String,
    pub b_cid: String,
}

/// A node of the environment being built.
enum Tree {
    /// A symlink to `path` in app `app` (a directory if `dir`).
    Link { app: usize, path: String, dir: bool },
    /// A directory merged from several apps.
    Dir(BTreeMap<String, Tree>),
}

struct Apps<'a> {
    src: &'a dyn BlockSource,
    list: &'a [Installed],
    contents: Vec<Cid>,
}

impl Apps<'_> {
    /// The entries of directory `path` of app `app`: names, and whether each is a directory.
    fn entries(&self, app: usize, path: &str) -> Result<Vec<(String, bool)>, EnvError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let cid = resolve::resolve(self.src, &self.contents[app], &parts)?;
        let node = resolve::load(self.src, &cid)?;
        let mut out = Vec::new();
        for link in resolve::list(self.src, &node)? {
            let name = link.name().to_owned();
            cairn_unixfs::get::check_name(path, &name)?;
            let child = resolve::load(self.src, &link.cid)?;
            out.push((name, child.is_dir()));
        }
        Ok(out)
    }

    /// The apps that provide anything at or below `t`.
    fn owners(t: &Tree, out: &mut Vec<usize>) {
        match t {
            Tree::Link { app, .. } => out.push(*app),
            Tree::Dir(m) => m.values().for_each(|c| Apps::owners(c, out)),
        }
    }

    fn conflict(&self, path: &str, a: usize, b: usize) -> EnvError {
        let (a, b) = (&self.list[a], &self.list[b]);
        Conflict {
            path: path.to_owned(),
            a: a.name.clone(),
            a_cid: a.cid.clone(),
            b: b.name.clone(),
            b_cid: b.cid.clone(),
        }
        .into()
    }

    /// Merges directory `path` of app `app` into `into`.
    fn merge(
        &self,
        into: &mut BTreeMap<String, Tree>,
        app: usize,
        path: &str,
    ) -> Result<(), EnvError> {
        for (name, dir) in self.entries(app, path)? {
            if path.is_empty() && name == META_DIR {
                continue;
            }
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let Some(existing) = into.get_mut(&name) else {
                into.insert(name, Tree::Link { app, path: p, dir });
                continue;
            };
            match existing {
                Tree::Link {
                    app: other,
                    path: op,
                    dir: true,
                } if dir => {
                    let (other, op) = (*other, op.clone());
                    let mut sub = BTreeMap::new();
                    self.merge(&mut sub, other, &op)?;
                    self.merge(&mut sub, app, &p)?;
                    *existing = Tree::Dir(sub);
                }
                Tree::Dir(sub) if dir => self.merge(sub, app, &p)?,
                _ => {
                    // A file against anything: the lower priority number wins outright; a
                    // tie is the user's to settle.
                    let mut owners = Vec::new();
                    Apps::owners(existing, &mut owners);
                    let mine = self.list[app].priority;
                    let (best, holder) = owners
                        .iter()
                        .map(|o| (self.list[*o].priority, *o))
                        .min()
                        .expect("a tree has an owner");
                    if mine < best {
                        *existing = Tree::Link { app, path: p, dir };
                    } else if mine == best {
                        return Err(self.conflict(&p, holder, app));
                    }
                }
            }
        }
        Ok(())
    }

    fn write(
        &self,
        sink: &dyn BlockSink,
        opts: &AddOptions,
        store_app: &Path,
        t: &Tree,
    ) -> Result<Added, EnvError> {
        match t {
            Tree::Link { app, path, .. } => {
                let target = store_app.join(&self.list[*app].cid).join(path);
                let bytes = target.as_os_str().as_encoded_bytes();
                Ok(tree::symlink(sink, opts, bytes, &Metadata::default())?)
            }
            Tree::Dir(m) => {
                let mut entries = Vec::with_capacity(m.len());
                for (name, child) in m {
                    entries.push((name.clone(), self.write(sink, opts, store_app, child)?));
                }
                Ok(tree::directory(sink, opts, entries, &Metadata::default())?)
            }
        }
    }
}

/// Builds and stores the environment of `apps` (each fully present in `src`) for the root
/// at `root`, whose links point into `root/store/app/`. Returns its CID (CIDv1).
pub fn build(
    src: &dyn BlockSource,
    sink: &dyn BlockSink,
    root: &Path,
    apps: &[Installed],
) -> Result<Cid, EnvError> {
    let mut list = apps.to_vec();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let mut contents = Vec::with_capacity(list.len());
    let mut app_cids = Vec::with_capacity(list.len());
    for a in &list {
        let cid: Cid = a
            .cid
            .parse()
            .map_err(|e| EnvError::Refused(format!("{}: bad CID {}: {e}", a.name, a.cid)))?;
        let node = match resolve::load(src, &cid)? {
            Node::Opaque { bytes, .. } => AppNode::decode(&bytes)
                .map_err(|e| EnvError::Refused(format!("{} ({cid}): {e}", a.name)))?,
            _ => {
                return Err(EnvError::Refused(format!(
                    "{} ({cid}) is not an app (add it with `cairn add --app`)",
                    a.name
                )))
            }
        };
        contents.push(node.content);
        app_cids.push(cid);
    }
    let apps = Apps {
        src,
        list: &list,
        contents,
    };
    let mut top = BTreeMap::new();
    for i in 0..list.len() {
        apps.merge(&mut top, i, "")?;
    }
    let opts = AddOptions::default()
        .resolve(Some(1), None)
        .map_err(EnvError::Refused)?;
    let store_app = root.join("store/app");
    let mut entries = Vec::with_capacity(top.len() + 1);
    for (name, t) in &top {
        entries.push((name.clone(), apps.write(sink, &opts, &store_app, t)?));
    }
    // .cairn: the manifest, and a link to each app node, which keeps it alive.
    let manifest = Manifest {
        version: 1,
        apps: list.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    let file = file::import_reader(sink, &opts, &mut &json[..], &Metadata::default(), &())?;
    let mut links = Vec::with_capacity(list.len());
    for (a, cid) in list.iter().zip(&app_cids) {
        let size = src.size(cid)?.unwrap_or(0);
        links.push((
            a.name.clone(),
            Added {
                cid: *cid,
                tsize: size,
                size: 0,
            },
        ));
    }
    let app_dir = tree::directory(sink, &opts, links, &Metadata::default())?;
    let meta = tree::directory(
        sink,
        &opts,
        vec![("manifest.json".into(), file), ("apps".into(), app_dir)],
        &Metadata::default(),
    )?;
    entries.push((META_DIR.to_owned(), meta));
    Ok(tree::directory(sink, &opts, entries, &Metadata::default())?.cid)
}
