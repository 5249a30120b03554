//! Recall-task generators: targets where the format says, values in their ranges, the same
//! data for the same seed, different data for other seeds, disjoint train and evaluation seeds,
//! and an error for every impossible configuration.

use mamba_vs_transformer::tasks::{
    copying, eval_seed, induction, mqar, selective_copy, train_seed, Split, Task, EVAL_SEED_BASE,
    IGNORE,
};

fn scored(targets: &[i64]) -> Vec<usize> {
    (0..targets.len())
        .filter(|&t| targets[t] != IGNORE)
        .collect()
}

#[test]
fn mqar_queries_each_key_once_and_targets_its_value() {
    let task = mqar::Config::new(64, 4);
    for seed in 0..50 {
        let e = Task::Mqar(task.clone()).example(32, seed).unwrap();
        assert_eq!((e.inputs.len(), e.targets.len()), (32, 32));
        let pairs: Vec<(i64, i64)> = (0..4)
            .map(|i| (e.inputs[2 * i], e.inputs[2 * i + 1]))
            .collect();
        for (k, v) in &pairs {
            assert!((1..32).contains(k) && (32..64).contains(v), "{pairs:?}");
        }
        let at = scored(&e.targets);
        assert_eq!(at.len(), 4, "one target per pair");
        let mut asked: Vec<i64> = Vec::new();
        for t in at {
            assert!(
                t >= 8 && (t - 8) % 2 == 0,
                "queries sit at even offsets after the pairs"
            );
            let key = e.inputs[t];
            let value = pairs
                .iter()
                .find(|(k, _)| *k == key)
                .expect("a queried key")
                .1;
            assert_eq!(e.targets[t], value);
            asked.push(key);
        }
        asked.sort();
        asked.dedup();
        assert_eq!(asked.len(), 4, "every key is queried once");
    }
}

#[test]
fn mqar_rejects_impossible_configs() {
    let too_many = Task::Mqar(mqar::Config::new(64, 9)).example(32, 0);
    assert!(too_many
        .unwrap_err()
        .to_string()
        .contains("4·num_kv_pairs (36) must be ≤ seq_len (32)"));
    let small_vocab = Task::Mqar(mqar::Config::new(8, 4)).example(64, 0);
    assert!(small_vocab
        .unwrap_err()
        .to_string()
        .contains("leaves 3 keys"));
}

#[test]
fn mqar_gaps_favour_short_distances() {
    // α = 0.01: p(g) ∝ g^−0.99, so the first query slot is by far the most common.
    let task = Task::Mqar(mqar::Config::new(64, 1));
    let mut first = 0;
    for seed in 0..400 {
        let e = task.example(256, seed).unwrap();
        first += usize::from(scored(&e.targets) == [2]);
    }
    assert!(first > 400 / 10, "{first} of 400 queries in the first slot");
}

#[test]
fn selective_copying_asks_for_the_data_in_order() {
    let task = Task::SelectiveCopying(selective_copy::Config::default());
    for seed in 0..20 {
        let e = task.example(64, seed).unwrap();
        assert_eq!(e.inputs.len(), 64 + 16);
        let data: Vec<i64> = e.inputs[..64]
            .iter()
            .copied()
            .filter(|t| *t != selective_copy::NOISE)
            .collect();
        assert_eq!(data.len(), 16);
        assert!(data.iter().all(|t| (2..16).contains(t)));
        assert_eq!(e.inputs[64], selective_copy::MARKER);
        assert_eq!(scored(&e.targets), (64..80).collect::<Vec<_>>());
        assert_eq!(&e.targets[64..], &data[..]);
        assert_eq!(&e.inputs[65..], &data[..15], "outputs are teacher-forced");
    }
    assert!(task.example(8, 0).is_err(), "16 tokens do not fit in 8");
}

#[test]
fn induction_heads_targets_the_token_after_the_first_special() {
    let cfg = induction::Config::default();
    let task = Task::InductionHeads(cfg.clone());
    for seed in 0..50 {
        let e = task.example(40, seed).unwrap();
        let specials: Vec<usize> = (0..40).filter(|&t| e.inputs[t] == cfg.special()).collect();
        assert_eq!(specials.len(), 2, "the special token appears twice");
        assert_eq!(specials[1], 39);
        assert_eq!(scored(&e.targets), [39]);
        assert_eq!(e.targets[39], e.inputs[specials[0] + 1]);
        assert!(e.inputs.iter().all(|t| (0..16).contains(t)));
    }
    assert!(task.example(2, 0).is_err());
}

#[test]
fn copying_trains_on_every_length_from_min_len_and_evaluates_at_one() {
    let task = Task::Copying(copying::Config {
        min_len: Some(2),
        ..copying::Config::default()
    });
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let e = task.example_for(Split::Train, 6, seed).unwrap();
        assert_eq!(
            (e.inputs.len(), e.targets.len()),
            (14, 14),
            "padded to 2·6 + 2"
        );
        let sep = e.inputs.iter().position(|t| *t == 1).unwrap();
        let len = sep - 1;
        lengths.insert(len);
        // `$ s | s .`, then end tokens with nothing to predict.
        assert_eq!(&e.inputs[1..sep], &e.inputs[sep + 1..sep + 1 + len]);
        assert_eq!(&e.targets[sep..sep + len], &e.inputs[1..sep]);
        assert_eq!(e.targets[sep + len], 2);
        assert_eq!(scored(&e.targets), (sep..=sep + len).collect::<Vec<_>>());
        assert!(e.inputs[2 * len + 2..].iter().all(|t| *t == 2));
    }
    assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
    for seed in 0..20 {
        let e = task.example(6, seed).unwrap();
        assert_eq!(
            scored(&e.targets).len(),
            7,
            "evaluation copies all 6 letters"
        );
    }
    let too_long = Task::Copying(copying::Config {
        min_len: Some(7),
        ..copying::Config::default()
    });
    assert!(too_long.example_for(Split::Train, 6, 0).is_err());
    assert!(
        too_long.example(6, 0).is_ok(),
        "min_len is for training only"
    );
}

#[test]
fn copying_and_phonebook_ask_for_the_copy() {
    let copy = Task::Copying(copying::Config::default());
    let e = copy.example(5, 3).unwrap();
    assert_eq!(e.inputs.len(), 12);
    assert_eq!(&e.inputs[1..6], &e.inputs[7..12]);
    assert_eq!(scored(&e.targets), (6..12).collect::<Vec<_>>());
    assert_eq!(&e.targets[6..11], &e.inputs[1..6]);
    assert_eq!(e.targets[11], 2, "then the end token");

    let book = copying::PhonebookConfig::default();
    let task = Task::Phonebook(book.clone());
    for seed in 0..20 {
        let e = task.example(6, seed).unwrap();
        let n = e.inputs.len();
        let number = &e.inputs[n - 10..];
        assert!(number.iter().all(|d| (5..15).contains(d)));
        let name = &e.inputs[n - 15..n - 11];
        // The queried entry appears in the book with the same number.
        let book_part = &e.inputs[..n - 16];
        let found = book_part
            .windows(15)
            .any(|w| &w[..4] == name && w[4] == 1 && &w[5..] == number);
        assert!(found, "seed {seed}");
        assert_eq!(scored(&e.targets).len(), 11);
        assert_eq!(&e.targets[n - 11..n - 1], number);
        assert_eq!(e.targets[n - 1], 4);
    }
    let tiny = copying::PhonebookConfig {
        alphabet: 2,
        name_len: 2,
        number_len: 3,
    };
    assert!(
        Task::Phonebook(tiny).example(5, 0).is_err(),
        "only 4 names exist"
    );
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let tasks = [
        Task::Mqar(mqar::Config::new(64, 4)),
        Task::SelectiveCopying(selective_copy::Config::default()),
        Task::InductionHeads(induction::Config::default()),
        Task::Copying(copying::Config::default()),
        Task::Phonebook(copying::PhonebookConfig::default()),
    ];
    for task in &tasks {
        let len = if matches!(task, Task::Phonebook(_)) {
            4
        } else {
            32
        };
        let a = task.batch(Split::Train, len, 3, 11).unwrap();
        let b = task.batch(Split::Train, len, 3, 11).unwrap();
        let c = task.batch(Split::Train, len, 3, 12).unwrap();
        assert!(
            a.inputs.equal(&b.inputs) && a.targets.equal(&b.targets),
            "{}",
            task.name()
        );
        assert!(!a.inputs.equal(&c.inputs), "{}", task.name());
        assert_eq!(a.inputs.size(), a.targets.size());
        let rows: Vec<Vec<i64>> = (0..3)
            .map(|i| Vec::<i64>::try_from(a.inputs.get(i)).unwrap())
            .collect();
        assert!(
            rows[0] != rows[1],
            "{}: examples in a batch differ",
            task.name()
        );
        let max = a.inputs.max().int64_value(&[]);
        assert!(max < task.vocab_size(), "{}", task.name());
    }
}

#[test]
fn training_and_evaluation_seeds_never_meet() {
    for run in 0..5 {
        for i in 0..1000 {
            assert!(train_seed(run, i) < EVAL_SEED_BASE);
            assert!(eval_seed(run, i) >= EVAL_SEED_BASE);
        }
    }
}
