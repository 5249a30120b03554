//! The model entries: a name that can name files; only options of the entry's own family, with
//! sensible values; and, for a checkpoint, a readable `config.json` of the family the entry
//! claims and no option that the checkpoint sets itself. Which option is which comes from the
//! one declaration of the options, `model_options.rs`.

use super::checker::{is_file_name, Checker};
use crate::models::Family;
use crate::suite::grid;
use crate::suite::model_options::ModelOption;
use crate::suite::schema::ModelEntry;

pub(super) fn check_model(c: &mut Checker, name: &str, m: &ModelEntry) {
    if !is_file_name(name) {
        c.fail(
            format!("models.{name}"),
            format!("model name `{name}` is not allowed; use letters, digits, `-`, `_` and `.`"),
        );
    }
    if m.checkpoint.is_some() {
        check_checkpoint_model(c, name, m);
        return;
    }
    for option in m.given() {
        if !option.belongs.includes(m.family) {
            other_family(c, name, m.family, option);
        }
    }
    if m.family == Family::Hybrid && m.pattern.is_none() {
        c.fail(
            format!("models.{name}.pattern"),
            "a hybrid needs its layer pattern: letters from M (Mamba-1), 2 (Mamba-2), A (attention) and F (MLP), e.g. `pattern: \"2222A2222F\"`, or jamba, nemotron_h or samba",
        );
    }
    m.check_values(c, name);
}

/// A checkpoint entry: readable, of the family it claims, with no options of its own but
/// those a checkpoint entry may set (`scan`).
fn check_checkpoint_model(c: &mut Checker, name: &str, m: &ModelEntry) {
    let at = |field: &str| format!("models.{name}.{field}");
    for option in m.given() {
        if !option.checkpoint_may_set {
            c.fail(
                at(option.name),
                format!(
                    "`{}` is set by the checkpoint's config.json; remove it",
                    option.name
                ),
            );
        } else if !option.belongs.includes(m.family) {
            other_family(c, name, m.family, option);
        }
    }
    m.check_values(c, name);
    match grid::checkpoint_config(m) {
        Err(e) => c.fail(at("checkpoint"), e.to_string()),
        Ok(config) if config.family() != m.family => c.fail(
            at("family"),
            format!(
                "the checkpoint holds a {} model, but this entry says `family: {}`",
                config.family().name(),
                m.family.name()
            ),
        ),
        Ok(_) => {}
    }
}

/// `option`, set on model `name` of `family`, belongs to other families only.
fn other_family(c: &mut Checker, name: &str, family: Family, option: &ModelOption) {
    if option.belongs.includes(family) {
        return;
    }
    c.fail(
        format!("models.{name}.{}", option.name),
        format!(
            "`{}` is an option of {} models, but this model has `family: {}`",
            option.name,
            option.belongs.names(),
            family.name()
        ),
    );
}
