//! `config.json` of HF transformers' `MambaForCausalLM`, `Mamba2ForCausalLM` and
//! `LlamaForCausalLM`, read into our model configs.
//!
//! Every field that changes the math is honoured or refused; none falls back silently. Absent
//! fields take the defaults of transformers' `MambaConfig` and `LlamaConfig`, because that is
//! what transformers itself does with the same file. Fields that only matter for training
//! initialisation, generation or bookkeeping are accepted and ignored by name. Any other field
//! is an error: a field we do not know might change the model.

use super::CheckpointError;
use crate::models::{mamba, mamba2, transformer, ModelConfig};
use crate::scan::ScanImpl;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Bookkeeping, generation and tokenizer fields of any HF config: none changes the logits.
const GENERIC_FIELDS: &[&str] = &[
    "_name_or_path",
    "architectures",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "use_cache",
    "initializer_range",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "tokenizer_class",
];

/// Mamba fields that only shape the random initialisation or pick a kernel.
const MAMBA_INIT_AND_KERNEL_FIELDS: &[&str] = &[
    "time_step_scale",
    "time_step_min",
    "time_step_max",
    "time_step_init_scheme",
    "time_step_floor",
    "rescale_prenorm_residual",
    "use_mambapy",
    "use_associative_scan",
    // mamba_ssm's fused add+norm kernel computes the same sum.
    "fused_add_norm",
    // Already applied: `vocab_size` is the padded size.
    "pad_vocab_size_multiple",
];

/// Mamba-2 fields that only shape the random initialisation, or that HF's `Mamba2Mixer` never
/// reads.
const MAMBA2_INERT_FIELDS: &[&str] = &[
    "time_step_min",
    "time_step_max",
    "time_step_floor",
    "rescale_prenorm_residual",
    // A Mamba-1 leftover: Mamba-2 has no low-rank Δ projection.
    "time_step_rank",
    // Stored, but the mixer applies its gated RMSNorm whatever it says.
    "rms_norm",
];

/// Llama fields without effect on a forward pass in eval mode with unscaled RoPE.
const LLAMA_INERT_FIELDS: &[&str] = &[
    // Only scaled RoPE variants read it.
    "max_position_embeddings",
    // Dropout is off at inference.
    "attention_dropout",
    // Tensor-parallel slicing of the same matmuls (transformers < 5).
    "pretraining_tp",
];

/// Reads `config.json` in `dir`.
pub fn read(dir: &Path) -> Result<ModelConfig, CheckpointError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| CheckpointError::Io {
        path: path.clone(),
        source,
    })?;
    parse(&text, &path)
}

/// Parses the text of a `config.json`; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<ModelConfig, CheckpointError> {
    let text = quote_non_finite(text);
    let value: Value = serde_json::from_str(&text).map_err(|source| CheckpointError::Json {
        path: path.to_owned(),
        source,
    })?;
    let Value::Object(map) = value else {
        return Err(CheckpointError::Unsupported {
            path: path.to_owned(),
            field: "(top level)".to_owned(),
            value: short(&value),
            expected: "a JSON object".to_owned(),
        });
    };
    let mut fields = Fields {
        map,
        path: path.to_owned(),
    };
    let model_type = fields.required_str("model_type")?;
    let config = match model_type.as_str() {
        "mamba" => {
            fields.check_architecture("MambaForCausalLM")?;
            ModelConfig::Mamba(mamba_config(&mut fields)?)
        }
        "mamba2" => {
            fields.check_architecture("Mamba2ForCausalLM")?;
            ModelConfig::Mamba2(mamba2_config(&mut fields)?)
        }
        "llama" => {
            fields.check_architecture("LlamaForCausalLM")?;
            ModelConfig::Transformer(llama_config(&mut fields)?)
        }
        other => {
            return Err(fields.unsupported(
                "model_type",
                &Value::String(other.to_owned()),
                "\"mamba\", \"mamba2\" or \"llama\"",
            ))
        }
    };
    fields.ignore(GENERIC_FIELDS);
    fields.finish()?;
    Ok(config)
}

/// transformers' `MambaConfig`, including the legacy mamba_ssm keys that the converted
/// state-spaces/mamba-*-hf checkpoints still carry.
fn mamba_config(f: &mut Fields) -> Result<mamba::Config, CheckpointError> {
    let d_model = f.required_int("hidden_size")?;
    f.must_equal_if_present("d_model", d_model)?;
    let n_layers = f.required_int("num_hidden_layers")?;
    f.must_equal_if_present("n_layer", n_layers)?;
    let vocab_size = f.int_or("vocab_size", 50280)?;
    let expand = f.int_or("expand", 2)?;
    f.must_equal_if_present("intermediate_size", expand * d_model)?;
    f.must_equal_if_present("d_inner", expand * d_model)?;
    let dt_rank = match f.take("time_step_rank") {
        None => ceil_div(d_model, 16),
        Some(Value::String(auto)) if auto == "auto" => ceil_div(d_model, 16),
        Some(value) => f.as_positive_int("time_step_rank", &value, "\"auto\" or an integer ≥ 1")?,
    };
    f.silu_only("hidden_act")?;
    if !f.bool_or("rms_norm", true)? {
        return Err(f.unsupported(
            "rms_norm",
            &Value::Bool(false),
            "true (LayerNorm Mamba models are not implemented)",
        ));
    }
    if let Some(ssm_cfg) = f.take("ssm_cfg") {
        if !matches!(&ssm_cfg, Value::Object(m) if m.is_empty()) {
            return Err(f.unsupported(
                "ssm_cfg",
                &ssm_cfg,
                "{} (the ssm options are read from the top-level fields)",
            ));
        }
    }
    f.ignore(MAMBA_INIT_AND_KERNEL_FIELDS);
    Ok(mamba::Config {
        d_model,
        n_layers,
        vocab_size,
        d_state: f.int_or("state_size", 16)?,
        d_conv: f.int_or("conv_kernel", 4)?,
        expand,
        dt_rank: Some(dt_rank),
        norm_eps: f.float_or("layer_norm_epsilon", 1e-5)?,
        proj_bias: f.bool_or("use_bias", false)?,
        conv_bias: f.bool_or("use_conv_bias", true)?,
        residual_in_fp32: f.bool_or("residual_in_fp32", true)?,
        tie_embeddings: f.bool_or("tie_word_embeddings", true)?,
        scan: ScanImpl::Auto,
        init: Default::default(),
    })
}

/// transformers' `Mamba2Config`, with its defaults (those of Mamba-Codestral-7B: note
/// `n_groups` 8 and untied embeddings).
fn mamba2_config(f: &mut Fields) -> Result<mamba2::Config, CheckpointError> {
    let d_model = f.int_or("hidden_size", 4096)?;
    let expand = f.int_or("expand", 2)?;
    let heads = f.int_or("num_heads", 128)?;
    let headdim = f.int_or("head_dim", 64)?;
    if heads * headdim != expand * d_model {
        return Err(f.unsupported_value(
            "num_heads",
            heads.to_string(),
            &format!(
                "hidden_size · expand / head_dim = {} (num_heads · head_dim must equal the inner width)",
                expand * d_model / headdim.max(1)
            ),
        ));
    }
    let ngroups = f.int_or("n_groups", 8)?;
    if heads % ngroups != 0 {
        return Err(f.unsupported_value(
            "n_groups",
            ngroups.to_string(),
            &format!("a divisor of num_heads ({heads})"),
        ));
    }
    f.silu_only("hidden_act")?;
    let dt_limit = time_step_limit(f)?;
    // The conversion script's ad-hoc attribute; the modeling code always gates before the norm.
    if let Some(value) = f.take("norm_before_gate") {
        if value != Value::Bool(false) {
            return Err(f.unsupported(
                "norm_before_gate",
                &value,
                "false (Mamba-2 gates before its norm)",
            ));
        }
    }
    f.ignore(MAMBA2_INERT_FIELDS);
    Ok(mamba2::Config {
        d_model,
        n_layers: f.int_or("num_hidden_layers", 64)?,
        vocab_size: f.int_or("vocab_size", 32768)?,
        d_state: f.int_or("state_size", 128)?,
        d_conv: f.int_or("conv_kernel", 4)?,
        expand,
        headdim,
        ngroups,
        chunk_size: f.int_or("chunk_size", 256)?,
        dt_limit,
        norm_eps: f.float_or("layer_norm_epsilon", 1e-5)?,
        proj_bias: f.bool_or("use_bias", false)?,
        conv_bias: f.bool_or("use_conv_bias", true)?,
        residual_in_fp32: f.bool_or("residual_in_fp32", true)?,
        tie_embeddings: f.bool_or("tie_word_embeddings", false)?,
    })
}

/// `time_step_limit`: [low, high] that Δ is clamped into, HF's default (0, ∞) meaning none
/// (written `[0.0, {"__float__": "Infinity"}]` by transformers 5, `[0.0, Infinity]` by 4).
fn time_step_limit(f: &mut Fields) -> Result<Option<[f64; 2]>, CheckpointError> {
    let Some(value) = f.take("time_step_limit") else {
        return Ok(None);
    };
    let pair = value
        .as_array()
        .filter(|a| a.len() == 2)
        .and_then(|a| Some([as_float(&a[0])?, as_float(&a[1])?]));
    match pair {
        Some([low, high]) if low == 0.0 && high == f64::INFINITY => Ok(None),
        Some(limit) if mamba2::is_dt_limit(limit) => Ok(Some(limit)),
        _ => Err(f.unsupported("time_step_limit", &value, "[low, high] with 0 ≤ low < high")),
    }
}

/// transformers' `LlamaConfig` (4.x and 5.x spellings of the RoPE parameters).
fn llama_config(f: &mut Fields) -> Result<transformer::Config, CheckpointError> {
    let d_model = f.required_int("hidden_size")?;
    let n_heads = f.required_int("num_attention_heads")?;
    let n_kv_heads = f.int_or("num_key_value_heads", n_heads)?;
    if n_heads % n_kv_heads != 0 {
        return Err(f.unsupported_value(
            "num_key_value_heads",
            n_kv_heads.to_string(),
            &format!("a divisor of num_attention_heads ({n_heads})"),
        ));
    }
    let head_dim = f.int_or("head_dim", d_model / n_heads)?;
    f.silu_only("hidden_act")?;
    let rope_theta = rope_theta(f)?;
    f.ignore(LLAMA_INERT_FIELDS);
    Ok(transformer::Config {
        d_model,
        n_layers: f.required_int("num_hidden_layers")?,
        vocab_size: f.int_or("vocab_size", 32000)?,
        head_dim,
        n_heads: Some(n_heads),
        n_kv_heads: Some(n_kv_heads),
        intermediate_size: Some(f.int_or("intermediate_size", 11008)?),
        mlp_ratio: 0.0,
        mlp_multiple_of: None,
        rope_theta,
        norm_eps: f.float_or("rms_norm_eps", 1e-6)?,
        attention_bias: f.bool_or("attention_bias", false)?,
        mlp_bias: f.bool_or("mlp_bias", false)?,
        tie_embeddings: f.bool_or("tie_word_embeddings", false)?,
    })
}

/// θ of unscaled RoPE: `rope_parameters.rope_theta` (transformers 5) or `rope_theta` with an
/// empty `rope_scaling` (transformers 4). Scaled variants (llama3, yarn, …) change the
/// frequencies and are refused.
fn rope_theta(f: &mut Fields) -> Result<f64, CheckpointError> {
    let mut theta = f.float_or("rope_theta", 10_000.0)?;
    for field in ["rope_scaling", "rope_parameters"] {
        let Some(value) = f.take(field) else { continue };
        let Value::Object(params) = &value else {
            return Err(f.unsupported(field, &value, "an object or null"));
        };
        for (key, param) in params {
            let name = format!("{field}.{key}");
            match key.as_str() {
                "rope_type" | "type" if param.as_str() == Some("default") => {}
                "rope_theta" => {
                    theta = param
                        .as_f64()
                        .ok_or_else(|| f.unsupported(&name, param, "a number"))?;
                }
                "rope_type" | "type" => {
                    return Err(f.unsupported(&name, param, "\"default\" (unscaled RoPE)"))
                }
                _ => return Err(f.unsupported(&name, param, "absent (unscaled RoPE)")),
            }
        }
    }
    Ok(theta)
}

/// Python's `json` writes ∞ and NaN as the bare words `Infinity`, `-Infinity` and `NaN`, which
/// are not JSON (HF's Mamba2 `time_step_limit` is `[0.0, Infinity]` by default). They become
/// strings here, outside string literals, for the fields that accept them to read.
fn quote_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if !in_string {
            if let Some(word) = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|w| rest.starts_with(w))
            {
                out.push('"');
                out.push_str(word);
                out.push('"');
                rest = &rest[word.len()..];
                continue;
            }
        }
        match ch {
            '"' if !escaped => in_string = !in_string,
            _ => {}
        }
        escaped = in_string && ch == '\\' && !escaped;
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// A number of a config: a JSON number, one of the words [`quote_non_finite`] quoted, or
/// transformers 5's `{"__float__": "Infinity"}`.
fn as_float(value: &Value) -> Option<f64> {
    match value {
        Value::String(word) if word == "Infinity" => Some(f64::INFINITY),
        Value::String(word) if word == "-Infinity" => Some(f64::NEG_INFINITY),
        Value::Object(map) if map.len() == 1 => as_float(map.get("__float__")?),
        other => other.as_f64(),
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// A JSON value for a message, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// The fields of one `config.json`, taken out one by one; what is left at the end is unknown.
struct Fields {
    map: Map<String, Value>,
    path: PathBuf,
}

impl Fields {
    /// The value of `key`, if present and not null (HF writes null for "use the default").
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn missing(&self, key: &str) -> CheckpointError {
        CheckpointError::MissingField {
            path: self.path.clone(),
            field: key.to_owned(),
        }
    }

    fn unsupported(&self, field: &str, value: &Value, expected: &str) -> CheckpointError {
        self.unsupported_value(field, short(value), expected)
    }

    fn unsupported_value(&self, field: &str, value: String, expected: &str) -> CheckpointError {
        CheckpointError::Unsupported {
            path: self.path.clone(),
            field: field.to_owned(),
            value,
            expected: expected.to_owned(),
        }
    }

    fn as_positive_int(
        &self,
        key: &str,
        value: &Value,
        expected: &str,
    ) -> Result<i64, CheckpointError> {
        value
            .as_i64()
            .filter(|&v| v >= 1)
            .ok_or_else(|| self.unsupported(key, value, expected))
    }

    fn required_int(&mut self, key: &str) -> Result<i64, CheckpointError> {
        let value = self.take(key).ok_or_else(|| self.missing(key))?;
        self.as_positive_int(key, &value, "an integer ≥ 1")
    }

    fn int_or(&mut self, key: &str, default: i64) -> Result<i64, CheckpointError> {
        match self.take(key) {
            None => Ok(default),
            Some(value) => self.as_positive_int(key, &value, "an integer ≥ 1"),
        }
    }

    fn float_or(&mut self, key: &str, default: f64) -> Result<f64, CheckpointError> {
        match self.take(key) {
            None => Ok(default),
            Some(value) => value
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| self.unsupported(key, &value, "a positive number")),
        }
    }

    fn bool_or(&mut self, key: &str, default: bool) -> Result<bool, CheckpointError> {
        match self.take(key) {
            None => Ok(default),
            Some(value) => value
                .as_bool()
                .ok_or_else(|| self.unsupported(key, &value, "true or false")),
        }
    }

    fn required_str(&mut self, key: &str) -> Result<String, CheckpointError> {
        let value = self.take(key).ok_or_else(|| self.missing(key))?;
        match value {
            Value::String(s) => Ok(s),
            other => Err(self.unsupported(key, &other, "a string")),
        }
    }

    /// A second spelling of a size must agree with the first.
    fn must_equal_if_present(&mut self, key: &str, expected: i64) -> Result<(), CheckpointError> {
        match self.take(key) {
            Some(value) if value.as_i64() != Some(expected) => {
                Err(self.unsupported(key, &value, &expected.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Both families use SiLU (Mamba's conv activation and gate; Llama's SwiGLU).
    fn silu_only(&mut self, key: &str) -> Result<(), CheckpointError> {
        match self.take(key) {
            None => Ok(()),
            Some(Value::String(act)) if act == "silu" || act == "swish" => Ok(()),
            Some(other) => Err(self.unsupported(key, &other, "\"silu\"")),
        }
    }

    /// `architectures`, when present, must name the causal-LM class we implement.
    fn check_architecture(&self, class: &str) -> Result<(), CheckpointError> {
        match self.map.get("architectures") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(names)) if names.iter().any(|n| n.as_str() == Some(class)) => Ok(()),
            Some(other) => Err(self.unsupported("architectures", other, &format!("[\"{class}\"]"))),
        }
    }

    fn ignore(&mut self, keys: &[&str]) {
        for key in keys {
            self.map.remove(*key);
        }
    }

    fn finish(self) -> Result<(), CheckpointError> {
        if self.map.is_empty() {
            return Ok(());
        }
        Err(CheckpointError::UnknownFields {
            path: self.path,
            fields: self.map.keys().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mamba2(json: &str) -> Result<mamba2::Config, CheckpointError> {
        match parse(json, Path::new("config.json"))? {
            ModelConfig::Mamba2(cfg) => Ok(cfg),
            other => panic!("not a Mamba-2 config: {other:?}"),
        }
    }

    const TINY: &str = r#"{"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"],
        "hidden_size": 32, "num_heads": 8, "head_dim": 8, "n_groups": 2, "state_size": 16,
        "num_hidden_layers": 2, "vocab_size": 100, "time_step_limit": [0.0, Infinity],
        "time_step_min": 0.001, "rms_norm": true, "tie_word_embeddings": true}"#;

    #[test]
    fn a_mamba2_config_reads_with_hf_defaults_and_python_infinity() {
        let cfg = mamba2(TINY).unwrap();
        assert_eq!(
            (
                cfg.d_model,
                cfg.nheads(),
                cfg.headdim,
                cfg.ngroups,
                cfg.d_state
            ),
            (32, 8, 8, 2, 16)
        );
        assert_eq!((cfg.chunk_size, cfg.d_conv, cfg.dt_limit), (256, 4, None));
        assert!(cfg.tie_embeddings && cfg.conv_bias && !cfg.proj_bias);
        let v5 = TINY.replace("Infinity]", r#"{"__float__": "Infinity"}]"#);
        assert_eq!(mamba2(&v5).unwrap().dt_limit, None);
        let limited = TINY.replace("[0.0, Infinity]", "[0.001, 0.2]");
        assert_eq!(mamba2(&limited).unwrap().dt_limit, Some([0.001, 0.2]));
        // Absent, HF's defaults: 8 groups and an untied head.
        let bare = r#"{"model_type": "mamba2", "hidden_size": 64, "num_heads": 16, "head_dim": 8}"#;
        let cfg = mamba2(bare).unwrap();
        assert_eq!((cfg.ngroups, cfg.tie_embeddings), (8, false));
    }

    #[test]
    fn mamba2_fields_that_change_the_model_are_refused_by_name() {
        for (from, to, field) in [
            (r#""num_heads": 8"#, r#""num_heads": 6"#, "num_heads"),
            (r#""n_groups": 2"#, r#""n_groups": 3"#, "n_groups"),
            ("[0.0, Infinity]", "[0.5, 0.1]", "time_step_limit"),
        ] {
            match mamba2(&TINY.replace(from, to)) {
                Err(CheckpointError::Unsupported { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let unknown = TINY.replace(r#""rms_norm": true"#, r#""d_mlp": 64"#);
        match mamba2(&unknown) {
            Err(CheckpointError::UnknownFields { fields, .. }) => assert_eq!(fields, ["d_mlp"]),
            other => panic!("an unknown field is refused by name: {other:?}"),
        }
    }

    #[test]
    fn only_bare_non_finite_words_are_quoted() {
        let text = r#"{"a": [Infinity, -Infinity, NaN], "b": "Infinity \" NaN"}"#;
        assert_eq!(
            quote_non_finite(text),
            r#"{"a": ["Infinity", "-Infinity", "NaN"], "b": "Infinity \" NaN"}"#
        );
    }
}
