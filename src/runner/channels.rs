//! Where notifiers are built, once, for every caller (`run`, `notify
//! test`, the scheduled reports' mailers): the config's notifier settings, with the config's templates and
//! links given at build time, become delivery channels that own their
//! name, type, timeout and rate limit (as Alertmanager's `config/receiver`
//! builds its integrations). Config is read here and in `config`; nothing
//! under `notify` reads it.

use crate::config::{Config, NotifierConfig, NotifierKind};
use crate::notify::delivery::Channel;
use crate::notify::email::EmailNotifier;
use crate::notify::sms::SmsNotifier;
use crate::notify::template::Rendering;
use crate::notify::voice::VoiceNotifier;
use crate::notify::webhook::WebhookNotifier;
use crate::notify::{Broken, ConsoleNotifier, FileNotifier, Notifier};
use std::sync::Arc;

/// The configured notifiers as channels.
pub fn build(config: &Config) -> Vec<Channel> {
    of(&config.notifiers, &Rendering::new(config.templates.clone(), config.links.clone()))
}

/// Channels for `notifiers`, rendering with `rendering`. Settings that do
/// not build (checked when the config was read, so not expected) give a
/// channel whose every delivery fails, so it falls over and raises
/// `NotifierFailing` instead of the process refusing to page at all.
pub fn of(notifiers: &[NotifierConfig], rendering: &Rendering) -> Vec<Channel> {
    notifiers
        .iter()
        .map(|c| {
            let notifier = notifier(&c.kind, rendering.clone()).unwrap_or_else(|error| Arc::new(Broken { error }));
            Channel::new(c.name.clone(), c.kind.as_str(), notifier, c.timeout, c.min_interval)
        })
        .collect()
}

/// The email notifiers the scheduled reports name (`runner::daily`), by name: a report is a larger mail than a
/// page, sent once a day, so an attempt may take at least `min_timeout`.
pub fn report_mailers<'a>(
    notifiers: &[NotifierConfig],
    names: impl Iterator<Item = &'a str>,
    min_timeout: std::time::Duration,
) -> Result<std::collections::HashMap<String, Arc<EmailNotifier>>, String> {
    let mut mailers = std::collections::HashMap::new();
    for name in names {
        let Some(NotifierKind::Email(settings)) = notifiers.iter().find(|n| n.name == name).map(|n| &n.kind) else {
            return Err(format!("report email {name:?} is not an email notifier"));
        };
        let mut settings = settings.clone();
        settings.timeout = settings.timeout.max(min_timeout);
        mailers.insert(name.to_string(), Arc::new(EmailNotifier::new(settings, Rendering::builtin())?));
    }
    Ok(mailers)
}

fn notifier(kind: &NotifierKind, rendering: Rendering) -> Result<Arc<dyn Notifier>, String> {
    fn shared<N: Notifier + 'static>(n: N) -> Arc<dyn Notifier> {
        Arc::new(n)
    }
    Ok(match kind {
        NotifierKind::Console => shared(ConsoleNotifier::new(rendering)),
        NotifierKind::File { path } => shared(FileNotifier::new(path.clone()).with_links(rendering.links)),
        NotifierKind::Webhook(s) => shared(WebhookNotifier::new(s.clone(), rendering)?),
        NotifierKind::Email(s) => shared(EmailNotifier::new(s.clone(), rendering)?),
        NotifierKind::Sms(s) => shared(SmsNotifier::new(s.clone(), rendering)?),
        NotifierKind::Voice(s) => shared(VoiceNotifier::new(s.clone(), rendering)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn each_configured_notifier_is_a_channel_with_its_name_type_and_limits() {
        let text = "sources:\n  - {type: zookeeper, cluster: p, nodes: ['a:2181']}\nnotifiers:\n  - {name: out, type: console}\n  - {name: log, type: file, path: n.jsonl, timeout: 3s, rate_limit: 20/m}\n  - {name: hook, type: webhook, flavor: slack, url: 'http://127.0.0.1:9/x'}\n";
        let config = Config::parse(text, Path::new("/etc/zkalert/z.yaml")).unwrap();
        let channels = build(&config);
        let shown: Vec<_> = channels.iter().map(|c| (c.name.as_str(), c.kind, c.timeout, c.min_interval)).collect();
        let secs = std::time::Duration::from_secs;
        assert_eq!(
            shown,
            [
                ("out", "console", secs(10), None),
                ("log", "file", secs(3), Some(secs(3))),
                ("hook", "webhook", secs(10), None)
            ]
        );
    }

    #[tokio::test]
    async fn settings_that_do_not_build_give_a_channel_that_fails_permanently() {
        let mut bad = crate::notify::webhook::WebhookSettings::new("hook", Default::default(), "ftp://x");
        bad.timeout = std::time::Duration::from_secs(1);
        let config = NotifierConfig::new("hook", NotifierKind::Webhook(bad));
        let channels = of(&[config], &Rendering::builtin());
        let d = crate::notify::Delivery {
            message: Arc::new(crate::notify::template::samples().remove(0)),
            channel: "hook".into(),
        };
        let e = channels[0].notifier.send(&d).await.unwrap_err();
        assert!(!e.is_retryable() && e.to_string().contains("url must be an http"), "{e}");
        assert_eq!((channels[0].name.as_str(), channels[0].kind), ("hook", "webhook"));
    }
}
