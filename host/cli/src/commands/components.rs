//! The verbs that build components: preinit (wizer) and compose.

use super::*;

pub(super) fn preinit(config: Config, _db: String, args: PreinitArgs) -> Result<ExitCode> {
    let PreinitArgs { input, output } = args;
    preinit_component(&config, &input, &output)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn compose(_config: Config, _db: String, args: ComposeArgs) -> Result<ExitCode> {
    let ComposeArgs {
        component,
        plugs,
        output,
    } = args;
    let report = compose::compose(&component, &plugs, &output)?;
    for (path, names) in &report.plugged {
        eprintln!("plugged {} → {}", path.display(), names.join(", "));
    }
    eprintln!(
        "wrote {} ({} bytes); it imports: {}",
        output.display(),
        report.bytes,
        report.imports.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
