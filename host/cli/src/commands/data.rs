//! The batch verbs: run, import, dedupe and its training, events, rekey,
//! rescore, score, calibrate, report, unmerge, show, exceptions, enrich,
//! sample and eval.

use super::*;

pub(super) fn run(config: Config, db: String, args: RunArgs) -> Result<ExitCode> {
    let RunArgs {
        from,
        output,
        source,
        quiet,
    } = args;
    let opts = run_options(from, output, &source, db, quiet, false)?;
    run_and_report(&config, &opts)
}

pub(super) fn import(config: Config, db: String, args: ImportArgs) -> Result<ExitCode> {
    let ImportArgs {
        from,
        output,
        source,
        quiet,
    } = args;
    let output = output.unwrap_or_default();
    let opts = run_options(from, output, &source, db, quiet, true)?;
    run_and_report(&config, &opts)
}

pub(super) fn dedupe(config: Config, db: String, args: DedupeArgs) -> Result<ExitCode> {
    let DedupeArgs {
        from,
        pairs,
        clusters,
        dry_run,
        model,
        quiet,
    } = args;
    let mut config = config;
    let choice = model.apply(&mut config)?;
    let opts = dedupe::Options {
        input: from.batch(None, quiet, choice),
        pairs,
        clusters,
        dry_run,
        db,
    };
    let report = dedupe::run(&config, &opts)?;
    if !quiet {
        dedupe::print_report(&report, &opts);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn dedupe_train(config: Config, db: String, args: DedupeTrainArgs) -> Result<ExitCode> {
    let DedupeTrainArgs {
        input,
        format,
        map,
        truth_column,
        reviews,
        from_store,
        neutral_prior,
        output,
    } = args;
    let input = input.map(|path| dedupe::Input {
        path,
        format: format_of(format),
        map,
        model: if truth_column.is_some() {
            dedupe::ModelChoice::Configured
        } else {
            dedupe::ModelChoice::Estimate
        },
        store_passes: truth_column.is_some(),
        truth_column,
        quiet: false,
    });
    train::command(
        &config,
        &db,
        train::Sources {
            input,
            reviews,
            from_store,
        },
        neutral_prior,
        &output,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn events(config: Config, db: String, args: EventsArgs) -> Result<ExitCode> {
    let EventsArgs {
        input,
        pipeline,
        no_score,
        quiet,
    } = args;
    let report = events::run(
        &config,
        &events::Options {
            input,
            db,
            pipeline,
            score: !no_score,
        },
    )?;
    if !quiet {
        events::print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn rekey(config: Config, db: String, args: RekeyArgs) -> Result<ExitCode> {
    let RekeyArgs { quiet } = args;
    let started = std::time::Instant::now();
    let r = rekey::rekey(&config, &db, quiet)?;
    if !quiet {
        eprintln!(
            "rekeyed {} lead{} of tenant {} in {:.1} s: {} index entries before, {} after",
            r.leads,
            if r.leads == 1 { "" } else { "s" },
            config.tenant,
            started.elapsed().as_secs_f64(),
            r.keys_before,
            r.keys_after
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes the pass `name` over the tenant for this command; when another
/// process holds it, says which (the command then does nothing).
fn take_pass(
    db: &str,
    tenant: &str,
    name: &str,
    doing: &str,
) -> Result<Option<leadgate_pipeline::pass::PassLease>> {
    Ok(
        match leadgate_pipeline::pass::PassLease::take(db, tenant, name)? {
            Ok(lease) => Some(lease),
            Err(held) => {
                eprintln!(
                    "{}",
                    leadgate_pipeline::pass::held_message(doing, tenant, &held)
                );
                None
            }
        },
    )
}

pub(super) fn rescore(config: Config, db: String, args: RescoreArgs) -> Result<ExitCode> {
    let RescoreArgs { pipeline, quiet } = args;
    // One rescoring pass of a tenant at a time, across every host.
    let Some(_lease) = take_pass(&db, &config.tenant, "rescore", "rescoring")? else {
        return Ok(ExitCode::SUCCESS);
    };
    let report = score::rescore_stored(&config, &db, None, "rescore", pipeline)?;
    if !quiet {
        eprintln!("{}", score::summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn score(config: Config, _db: String, args: ScoreArgs) -> Result<ExitCode> {
    let ScoreArgs {
        from,
        model,
        output,
        quiet,
    } = args;
    let r = batch::score_file(
        &config,
        &batch::Input {
            path: &from.input,
            format: format_of(from.format),
            map: &from.map,
        },
        model.as_deref(),
        &output,
    )?;
    if !quiet {
        eprintln!(
            "scored {} records{}{}",
            r.scored,
            if r.malformed > 0 {
                format!(
                    " · {} could not be read (an `error` line each)",
                    r.malformed
                )
            } else {
                String::new()
            },
            if r.failed > 0 {
                format!(" · {} failed in the component", r.failed)
            } else {
                String::new()
            }
        );
    }
    Ok(if r.failed > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) fn calibrate(config: Config, _db: String, args: CalibrateArgs) -> Result<ExitCode> {
    let CalibrateArgs {
        from,
        outcome,
        ignore,
        holdout,
        seed,
        l2,
        model_type,
        trees,
        placeholders,
        holdout_output,
        output,
        quiet,
    } = args;
    let opts = calibrate::Options {
        input: from.input,
        format: format_of(from.format),
        map: from.map,
        outcome,
        ignore,
        holdout,
        seed,
        l2,
        model_type,
        trees,
        placeholders: placeholders.unwrap_or_else(|| {
            calibrate::PLACEHOLDERS
                .iter()
                .map(|s| (*s).to_string())
                .collect()
        }),
        holdout_output,
        output,
        quiet,
    };
    let c = calibrate::run(&config, &opts)?;
    if opts.quiet {
        print!("{}", c.metrics);
    } else {
        calibrate::print_report(&c, &opts);
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn report(config: Config, _db: String, args: ReportArgs) -> Result<ExitCode> {
    let ReportArgs {
        from,
        outcome,
        model,
        signals,
        min_segment,
    } = args;
    let r = report::run(
        &config,
        &report::Options {
            input: from.input,
            format: format_of(from.format),
            map: from.map,
            outcome,
            model,
            signals,
            min_segment: min_segment.max(1),
        },
    )?;
    print!("{}", r.text);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn unmerge(config: Config, db: String, args: UnmergeArgs) -> Result<ExitCode> {
    let UnmergeArgs { id, by } = args;
    review::unmerge(&config, &db, &id, &by)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn show(_config: Config, db: String, args: ShowArgs) -> Result<ExitCode> {
    let ShowArgs { id } = args;
    review::show(&db, &id)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn exceptions(_config: Config, db: String, args: ExceptionsArgs) -> Result<ExitCode> {
    let ExceptionsArgs { limit, json } = args;
    let store = leadgate_store::Store::open(&db)?;
    let items = store.open_exceptions(limit)?;
    if json {
        for item in &items {
            println!("{}", serde_json::to_string(item)?);
        }
    } else if items.is_empty() {
        println!("the exception queue is empty");
    } else {
        for item in &items {
            println!(
                "#{:<5} lead {}  run {}  {}  {}",
                item.id,
                item.lead_id,
                item.run_id.map_or("-".into(), |r| r.to_string()),
                item.code,
                item.error
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn enrich(config: Config, db: String, args: EnrichArgs) -> Result<ExitCode> {
    let EnrichArgs {
        queued: _,
        limit,
        budget_ms,
        output,
        quiet,
    } = args;
    // One re-enrichment of a tenant's queue at a time, across every host.
    let Some(_lease) = take_pass(&db, &config.tenant, "reenrich", "re-enriching")? else {
        return Ok(ExitCode::SUCCESS);
    };
    let report = reenrich::run(
        &config,
        &reenrich::Options {
            db: db.clone(),
            limit,
            budget: std::time::Duration::from_millis(budget_ms.clamp(1, 600_000)),
            output,
            quiet,
        },
    )?;
    if !quiet {
        let states: Vec<String> = report
            .states
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        eprintln!(
            "re-enrichment: {} taken from the queue · {} done · {} still queued{}{}",
            report.taken,
            report.done,
            report.still_queued,
            if report.unreadable > 0 {
                format!(" · {} unreadable (left queued)", report.unreadable)
            } else {
                String::new()
            },
            if states.is_empty() {
                String::new()
            } else {
                format!("\nqualification: {}", states.join(" · "))
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn sample(_config: Config, _db: String, args: SampleArgs) -> Result<ExitCode> {
    let SampleArgs {
        count,
        seed,
        output,
        truth,
        labelled,
        companies,
        events,
        history,
        history_rows,
    } = args;
    leadgate_sample::write(count, seed, &output, truth.as_deref(), labelled.as_deref())?;
    eprintln!("wrote {count} leads to {}", output.display());
    if let Some(path) = companies {
        let n = leadgate_sample::write_companies(&path, seed)?;
        eprintln!("wrote {n} companies to {}", path.display());
    }
    if let Some(path) = events {
        let n = leadgate_sample::write_events(&output, &path, seed, clock::now_ms())?;
        eprintln!("wrote {n} events to {}", path.display());
    }
    if let Some(path) = history {
        leadgate_sample::write_history(&path, history_rows, seed)?;
        eprintln!("wrote {history_rows} history rows to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn eval(config: Config, _db: String, args: EvalArgs) -> Result<ExitCode> {
    let EvalArgs {
        results,
        truth,
        what,
    } = args;
    match (what, results, truth) {
        (
            Some(EvalWhat::Dedupe {
                from,
                truth_column,
                model,
            }),
            _,
            _,
        ) => {
            let mut config = config;
            let choice = model.apply(&mut config)?;
            let input = from.batch(Some(truth_column), false, choice);
            let prepared = dedupe::prepare(&config, &input, None)?;
            let guard = leadgate_merge::cluster::Guard {
                max_size: config.dedupe.max_cluster,
                ..Default::default()
            };
            let report = eval::dedupe::evaluate(
                &prepared,
                config.dedupe.review,
                config.dedupe.auto_merge,
                guard,
            );
            print!("{report}");
        }
        (None, Some(results), Some(truth)) => {
            let report = eval::evaluate(&results, &truth)?;
            print!("{report}");
        }
        _ => anyhow::bail!("eval needs --results and --truth, or `eval dedupe`"),
    }
    Ok(ExitCode::SUCCESS)
}
