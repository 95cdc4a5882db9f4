//! Marathon's group definitions (`/v2/groups` bodies): a tree of groups holding apps, a
//! whole stack from one file. Parsed into [`GroupDef`]s, then applied to the current
//! subtree as Marathon applies a group update: the lists given (`apps`, `groups`) replace
//! the current ones, the fields not given stay as they are.

use std::collections::BTreeMap;

use serde_json::Value;

use super::app::{AppContext, parse_app};
use crate::model::{AppId, AppSpec, GroupId, GroupRecord, MAX_PATH_LEN, PathId, Timestamp};
use agora_sdk::json::{Obj, Problems, as_string, unique};

/// Most apps in one group request, and most groups.
pub const MAX_GROUP_APPS: usize = 5_000;
pub const MAX_GROUPS: usize = 1_000;
/// Deepest nesting of groups in one request.
pub const MAX_GROUP_DEPTH: usize = 16;
pub const MAX_DEPENDENCIES: usize = 64;

/// A group as a request gives it; `None` for what it leaves out.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupDef {
    pub id: GroupId,
    pub apps: Option<Vec<AppSpec>>,
    pub groups: Option<Vec<GroupDef>>,
    pub dependencies: Option<Vec<PathId>>,
    pub enforce_role: Option<bool>,
}

const GROUP_FIELDS: &[&str] = &["id", "apps", "groups", "dependencies", "enforceRole", "version", "pods"];

/// Parses a group body. `url_id` is the group the URL names (its id in the body may be
/// left out); nested groups and apps resolve their ids against their parent.
pub fn parse_group(value: &Value, url_id: Option<&GroupId>, problems: &mut Problems) -> Option<GroupDef> {
    let mut counts = Counts::default();
    let before = problems.len();
    let def = parse_one(value, &PathId::root(), url_id, "", 0, &mut counts, problems);
    if counts.apps > MAX_GROUP_APPS {
        problems.add("/apps", format!("the request holds {} apps; at most {MAX_GROUP_APPS} are allowed", counts.apps));
    }
    if counts.groups > MAX_GROUPS {
        problems
            .add("/groups", format!("the request holds {} groups; at most {MAX_GROUPS} are allowed", counts.groups));
    }
    if problems.len() > before { None } else { def }
}

#[derive(Default)]
struct Counts {
    apps: usize,
    groups: usize,
}

fn parse_one(
    value: &Value,
    parent: &GroupId,
    url_id: Option<&GroupId>,
    path: &str,
    depth: usize,
    counts: &mut Counts,
    problems: &mut Problems,
) -> Option<GroupDef> {
    counts.groups += 1;
    let obj = Obj::of(value, path, problems)?;
    obj.reject_unknown(GROUP_FIELDS, problems);
    if obj.get("pods").is_some_and(|p| p.as_array().is_none_or(|a| !a.is_empty())) {
        problems.add(obj.at("pods"), "pods are not supported by Agora");
    }
    let id = match (obj.get("id"), url_id) {
        (None, Some(url)) => url.clone(),
        (None, None) => {
            problems.add(obj.at("id"), "is required");
            return None;
        }
        (Some(value), url) => {
            let text = as_string(value, &obj.at("id"), MAX_PATH_LEN * 2, problems)?;
            let id = match PathId::parse_relative(text, parent) {
                Ok(id) => id,
                Err(e) => {
                    problems.add(obj.at("id"), e.0);
                    return None;
                }
            };
            if let Some(url) = url
                && &id != url
            {
                problems.add(obj.at("id"), format!("{id} does not match the id in the URL, {url}"));
                return None;
            }
            if url.is_none() && depth > 0 && id.parent() != *parent {
                problems.add(obj.at("id"), format!("{id} is not a group directly inside {parent}"));
                return None;
            }
            id
        }
    };
    if depth > MAX_GROUP_DEPTH {
        problems.add(obj.at("groups"), format!("groups nest at most {MAX_GROUP_DEPTH} deep"));
        return None;
    }

    let dependencies = obj.strings("dependencies", MAX_DEPENDENCIES, MAX_PATH_LEN * 2, problems).map(|items| {
        let deps_path = obj.at("dependencies");
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match PathId::parse_relative(item, &id.parent()) {
                Ok(dep) if dep.contains(&id) || id.contains(&dep) => {
                    problems.add(format!("{deps_path}({i})"), format!("{dep} contains or is inside the group itself"))
                }
                Ok(dep) => out.push(dep),
                Err(e) => problems.add(format!("{deps_path}({i})"), e.0),
            }
        }
        unique(out.iter().map(PathId::as_str), &deps_path, "dependencies", problems);
        out
    });
    let enforce_role = obj.bool("enforceRole", problems);

    let apps = obj.array("apps", MAX_GROUP_APPS, problems).map(|items| {
        counts.apps += items.len();
        let apps_path = obj.at("apps");
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{apps_path}({i})");
            let cx = AppContext { base: &id, url_id: None, path: item_path.clone() };
            if let Some(spec) = parse_app(item, &cx, problems) {
                if spec.id.parent() != id {
                    problems.add(format!("{item_path}/id"), format!("{} is not an app directly inside {id}", spec.id));
                } else {
                    out.push(spec);
                }
            }
        }
        unique(out.iter().map(|s| s.id.as_str()), &apps_path, "app ids", problems);
        out
    });

    let groups = obj.array("groups", MAX_GROUPS, problems).map(|items| {
        let groups_path = obj.at("groups");
        let out: Vec<GroupDef> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                parse_one(item, &id, None, &format!("{groups_path}({i})"), depth + 1, counts, problems)
            })
            .collect();
        unique(out.iter().map(|g| g.id.as_str()), &groups_path, "group ids", problems);
        out
    });
    if let (Some(apps), Some(groups)) = (&apps, &groups) {
        for app in apps {
            if groups.iter().any(|g| g.id == app.id) {
                problems.add(obj.at("apps"), format!("{} is both an app and a group", app.id));
            }
        }
    }
    Some(GroupDef { id, apps, groups, dependencies, enforce_role })
}

/// The subtree under a group as it stands: its apps and explicit groups.
#[derive(Clone, Debug, Default)]
pub struct Subtree {
    pub apps: BTreeMap<AppId, AppSpec>,
    /// The version each app was read at, for a change prepared from this subtree.
    pub versions: BTreeMap<AppId, Timestamp>,
    pub groups: BTreeMap<GroupId, GroupRecord>,
}

impl Subtree {
    /// The groups directly inside `id` that hold anything.
    fn children(&self, id: &GroupId) -> Vec<GroupId> {
        let mut out: Vec<GroupId> = Vec::new();
        let direct = |path: &PathId| -> Option<GroupId> {
            // The ancestor of `path` that sits directly inside `id`.
            let mut p = path.clone();
            while !p.is_root() {
                let parent = p.parent();
                if &parent == id {
                    return Some(p);
                }
                p = parent;
            }
            None
        };
        for app in self.apps.keys() {
            if let Some(g) = direct(&app.parent()).filter(|g| g != id && id.contains(g)) {
                out.push(g);
            }
        }
        for group in self.groups.keys() {
            if let Some(g) = direct(group).filter(|g| g != id && id.contains(g)) {
                out.push(g);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn remove_under(&mut self, id: &GroupId) {
        self.apps.retain(|app, _| !id.contains(app));
        self.groups.retain(|group, _| !id.contains(group));
    }

    /// Applies `def`: given lists replace the current ones, the rest stays.
    pub fn apply(&mut self, def: &GroupDef) {
        let record = self.groups.entry(def.id.clone()).or_insert_with(|| GroupRecord {
            id: def.id.clone(),
            dependencies: Vec::new(),
            // The planner stamps the change's version on every record it stores.
            version: Timestamp(0),
            enforce_role: false,
        });
        if let Some(deps) = &def.dependencies {
            record.dependencies = deps.clone();
        }
        if let Some(enforce) = def.enforce_role {
            record.enforce_role = enforce;
        }
        if let Some(apps) = &def.apps {
            self.apps.retain(|app, _| app.parent() != def.id);
            for spec in apps {
                self.apps.insert(spec.id.clone(), spec.clone());
            }
        }
        if let Some(groups) = &def.groups {
            for child in self.children(&def.id) {
                if !groups.iter().any(|g| g.id == child) {
                    self.remove_under(&child);
                }
            }
            for group in groups {
                self.apply(group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value, url: Option<&str>) -> Result<GroupDef, Vec<(String, Vec<String>)>> {
        let url = url.map(|u| PathId::parse(u).expect("valid"));
        let mut problems = Problems::new();
        parse_group(&value, url.as_ref(), &mut problems).ok_or_else(|| problems.grouped())
    }

    #[test]
    fn a_stack_parses_with_ids_relative_to_their_groups() {
        let def = parse(
            json!({"id": "/shop", "apps": [{"id": "web", "cmd": "x", "dependencies": ["db"]}],
                "groups": [{"id": "infra", "apps": [{"id": "/shop/infra/dns", "cmd": "y"}]}],
                "dependencies": ["/base"]}),
            None,
        )
        .expect("valid");
        assert_eq!(def.id.as_str(), "/shop");
        let apps = def.apps.as_ref().expect("apps");
        assert_eq!(apps[0].id.as_str(), "/shop/web");
        assert_eq!(apps[0].dependencies[0].as_str(), "/shop/db");
        let infra = &def.groups.as_ref().expect("groups")[0];
        assert_eq!(infra.id.as_str(), "/shop/infra");
        assert_eq!(infra.apps.as_ref().expect("apps")[0].id.as_str(), "/shop/infra/dns");
        assert_eq!(def.dependencies.as_ref().map(|d| d[0].as_str()), Some("/base"));
    }

    #[test]
    fn problems_inside_a_group_name_their_place_in_the_tree() {
        let errors = parse(
            json!({"id": "/shop", "apps": [{"id": "web"}], "groups": [{"id": "/elsewhere/x"}], "pods": [{}], "x": 1}),
            None,
        )
        .expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"/apps(0)/cmd"), "{paths:?}");
        assert!(paths.contains(&"/groups(0)/id"), "{paths:?}");
        assert!(paths.contains(&"/pods"), "{paths:?}");
        assert!(paths.contains(&"/x"), "{paths:?}");
        let outside = parse(json!({"id": "/shop", "apps": [{"id": "/other/web", "cmd": "x"}]}), None).expect_err("x");
        assert_eq!(outside[0].0, "/apps(0)/id");
        let url = parse(json!({"id": "/b"}), Some("/a")).expect_err("mismatch");
        assert_eq!(url[0].0, "/id");
    }

    #[test]
    fn applying_an_update_replaces_only_the_lists_it_gives() {
        let spec = |id: &str| AppSpec {
            id: PathId::parse(id).expect("valid"),
            ..parse(json!({"id": "/t", "apps": [{"id": "a", "cmd": "x"}]}), None).expect("valid").apps.expect("apps")[0]
                .clone()
        };
        let mut subtree = Subtree::default();
        for id in ["/shop/web", "/shop/db", "/shop/infra/dns", "/shop/old/x"] {
            subtree.apps.insert(PathId::parse(id).expect("valid"), spec(id));
        }
        let def =
            parse(json!({"id": "/shop", "groups": [{"id": "infra"}], "dependencies": ["/base"]}), None).expect("valid");
        subtree.apply(&def);
        let apps: Vec<&str> = subtree.apps.keys().map(PathId::as_str).collect();
        assert_eq!(apps, ["/shop/db", "/shop/infra/dns", "/shop/web"], "groups not listed are removed");
        let shop = subtree.groups.get(&PathId::parse("/shop").expect("valid")).expect("record");
        assert_eq!(shop.dependencies[0].as_str(), "/base");
        let def = parse(json!({"id": "/shop", "apps": [{"id": "web", "cmd": "z"}]}), None).expect("valid");
        subtree.apply(&def);
        let apps: Vec<&str> = subtree.apps.keys().map(PathId::as_str).collect();
        assert_eq!(apps, ["/shop/infra/dns", "/shop/web"], "the apps listed replace the group's own apps");
    }
}
