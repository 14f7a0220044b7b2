//! The deterministic template writer: always available, the chain's last
//! writer. One sentence pattern per fact, in six languages; the summary is
//! the findings themselves.

use async_trait::async_trait;
use inspection_core::wire::InspectionKind;

use super::lexicon::{class_term, position_term};
use super::{
    Draft, Language, PlateFact, ReportFinding, ReportInput, ReportSummary, ReportWriter,
    SummaryDamage, WriteError,
};
use crate::store::{Comparison, FindingStatus};

/// The sentence patterns of one language. `{...}` are filled in.
struct Phrases {
    pickup: &'static str,
    ret: &'static str,
    head_plate: &'static str,
    head_unreadable: &'static str,
    head_not_found: &'static str,
    compared: &'static str,
    no_pickup: &'static str,
    new: &'static str,
    change: &'static str,
    pre_existing: &'static str,
    baseline: &'static str,
    confirmed: &'static str,
    none_pickup: &'static str,
    none_return: &'static str,
    no_model: &'static str,
    review: &'static str,
    frames: &'static str,
}

fn phrases(lang: Language) -> &'static Phrases {
    match lang {
        Language::En => &Phrases {
            pickup: "Pickup inspection",
            ret: "Return inspection",
            head_plate: "{kind} of the vehicle with plate {plate} at site {site}.",
            head_unreadable: "{kind} at site {site}; the plate could not be read.",
            head_not_found: "{kind} at site {site}; no plate was seen.",
            compared: "The vehicle was compared with its pickup inspection.",
            no_pickup: "No earlier pickup inspection of this vehicle was found to compare with.",
            new: "{ref} – {class} ({position}): new damage, confidence {conf} %.",
            change: "{ref} – {class} ({position}): a change since the pickup, to be checked by staff.",
            pre_existing: "{ref} – {class} ({position}): already recorded at the pickup.",
            baseline: "{ref} – {class} ({position}): recorded at this pickup.",
            confirmed: "{ref} – {class} ({position}): new damage, confirmed by staff.",
            none_pickup: "No damage was found.",
            none_return: "No new damage was found.",
            no_model: "No damage model is configured: only changes since the pickup are detected.",
            review: "New damage must be confirmed by staff before the customer is charged.",
            frames: "{ok} of {total} images were usable.",
        },
        Language::De => &Phrases {
            pickup: "Übergabeprüfung",
            ret: "Rückgabeprüfung",
            head_plate: "{kind} des Fahrzeugs mit dem Kennzeichen {plate} am Standort {site}.",
            head_unreadable: "{kind} am Standort {site}; das Kennzeichen war nicht lesbar.",
            head_not_found: "{kind} am Standort {site}; kein Kennzeichen erkannt.",
            compared: "Das Fahrzeug wurde mit seiner Übergabeprüfung verglichen.",
            no_pickup: "Für dieses Fahrzeug wurde keine frühere Übergabeprüfung zum Vergleich gefunden.",
            new: "{ref} – {class} ({position}): neuer Schaden, Konfidenz {conf} %.",
            change: "{ref} – {class} ({position}): eine Veränderung seit der Übergabe, vom Personal zu prüfen.",
            pre_existing: "{ref} – {class} ({position}): bereits bei der Übergabe erfasst.",
            baseline: "{ref} – {class} ({position}): bei dieser Übergabe erfasst.",
            confirmed: "{ref} – {class} ({position}): neuer Schaden, vom Personal bestätigt.",
            none_pickup: "Es wurde kein Schaden gefunden.",
            none_return: "Es wurde kein neuer Schaden gefunden.",
            no_model: "Kein Schadensmodell ist konfiguriert: nur Veränderungen seit der Übergabe werden erkannt.",
            review: "Neue Schäden müssen vom Personal bestätigt werden, bevor dem Kunden etwas berechnet wird.",
            frames: "{ok} von {total} Bildern waren verwendbar.",
        },
        Language::Fr => &Phrases {
            pickup: "Inspection de départ",
            ret: "Inspection de retour",
            head_plate: "{kind} du véhicule immatriculé {plate} sur le site {site}.",
            head_unreadable: "{kind} sur le site {site} ; la plaque n'a pas pu être lue.",
            head_not_found: "{kind} sur le site {site} ; aucune plaque n'a été vue.",
            compared: "Le véhicule a été comparé avec son inspection de départ.",
            no_pickup: "Aucune inspection de départ antérieure de ce véhicule n'a été trouvée pour la comparaison.",
            new: "{ref} – {class} ({position}) : nouveau dommage, confiance {conf} %.",
            change: "{ref} – {class} ({position}) : un changement depuis le départ, à vérifier par le personnel.",
            pre_existing: "{ref} – {class} ({position}) : déjà constaté lors du départ.",
            baseline: "{ref} – {class} ({position}) : constaté lors de ce départ.",
            confirmed: "{ref} – {class} ({position}) : nouveau dommage, confirmé par le personnel.",
            none_pickup: "Aucun dommage n'a été trouvé.",
            none_return: "Aucun nouveau dommage n'a été trouvé.",
            no_model: "Aucun modèle de dommages n'est configuré : seuls les changements depuis le départ sont détectés.",
            review: "Tout nouveau dommage doit être confirmé par le personnel avant toute facturation au client.",
            frames: "{ok} images sur {total} étaient utilisables.",
        },
        Language::It => &Phrases {
            pickup: "Ispezione di ritiro",
            ret: "Ispezione di riconsegna",
            head_plate: "{kind} del veicolo con targa {plate} presso la sede {site}.",
            head_unreadable: "{kind} presso la sede {site}; la targa non era leggibile.",
            head_not_found: "{kind} presso la sede {site}; nessuna targa rilevata.",
            compared: "Il veicolo è stato confrontato con la sua ispezione di ritiro.",
            no_pickup: "Non è stata trovata nessuna ispezione di ritiro precedente di questo veicolo per il confronto.",
            new: "{ref} – {class} ({position}): nuovo danno, confidenza {conf} %.",
            change: "{ref} – {class} ({position}): un cambiamento dal ritiro, da verificare da parte del personale.",
            pre_existing: "{ref} – {class} ({position}): già registrato al ritiro.",
            baseline: "{ref} – {class} ({position}): registrato a questo ritiro.",
            confirmed: "{ref} – {class} ({position}): nuovo danno, confermato dal personale.",
            none_pickup: "Non è stato trovato nessun danno.",
            none_return: "Non è stato trovato nessun nuovo danno.",
            no_model: "Nessun modello di danni è configurato: sono rilevati solo i cambiamenti dal ritiro.",
            review: "I nuovi danni devono essere confermati dal personale prima di qualsiasi addebito al cliente.",
            frames: "{ok} immagini su {total} erano utilizzabili.",
        },
        Language::Es => &Phrases {
            pickup: "Inspección de entrega",
            ret: "Inspección de devolución",
            head_plate: "{kind} del vehículo con matrícula {plate} en la sede {site}.",
            head_unreadable: "{kind} en la sede {site}; la matrícula no se pudo leer.",
            head_not_found: "{kind} en la sede {site}; no se vio ninguna matrícula.",
            compared: "El vehículo se comparó con su inspección de entrega.",
            no_pickup: "No se encontró ninguna inspección de entrega anterior de este vehículo para comparar.",
            new: "{ref} – {class} ({position}): daño nuevo, confianza {conf} %.",
            change: "{ref} – {class} ({position}): un cambio desde la entrega, que el personal debe comprobar.",
            pre_existing: "{ref} – {class} ({position}): ya registrado en la entrega.",
            baseline: "{ref} – {class} ({position}): registrado en esta entrega.",
            confirmed: "{ref} – {class} ({position}): daño nuevo, confirmado por el personal.",
            none_pickup: "No se encontró ningún daño.",
            none_return: "No se encontró ningún daño nuevo.",
            no_model: "No hay ningún modelo de daños configurado: solo se detectan los cambios desde la entrega.",
            review: "Los daños nuevos deben ser confirmados por el personal antes de cobrar al cliente.",
            frames: "{ok} de {total} imágenes eran utilizables.",
        },
        Language::Nl => &Phrases {
            pickup: "Uitgifte-inspectie",
            ret: "Inleverinspectie",
            head_plate: "{kind} van het voertuig met kenteken {plate} op locatie {site}.",
            head_unreadable: "{kind} op locatie {site}; het kenteken was niet leesbaar.",
            head_not_found: "{kind} op locatie {site}; er werd geen kenteken gezien.",
            compared: "Het voertuig is vergeleken met zijn uitgifte-inspectie.",
            no_pickup: "Er is geen eerdere uitgifte-inspectie van dit voertuig gevonden om mee te vergelijken.",
            new: "{ref} – {class} ({position}): nieuwe schade, betrouwbaarheid {conf} %.",
            change: "{ref} – {class} ({position}): een verandering sinds de uitgifte, door het personeel te controleren.",
            pre_existing: "{ref} – {class} ({position}): al vastgelegd bij de uitgifte.",
            baseline: "{ref} – {class} ({position}): vastgelegd bij deze uitgifte.",
            confirmed: "{ref} – {class} ({position}): nieuwe schade, bevestigd door het personeel.",
            none_pickup: "Er is geen schade gevonden.",
            none_return: "Er is geen nieuwe schade gevonden.",
            no_model: "Er is geen schademodel ingesteld: alleen veranderingen sinds de uitgifte worden gedetecteerd.",
            review: "Nieuwe schade moet door het personeel worden bevestigd voordat de klant iets wordt aangerekend.",
            frames: "{ok} van de {total} beelden waren bruikbaar.",
        },
    }
}

/// The narrative and summary of `input`, in its language.
pub fn render(input: &ReportInput) -> Draft {
    let lang = input.language;
    let p = phrases(lang);
    let mut sentences = Vec::new();
    let kind = match input.kind {
        InspectionKind::Pickup => p.pickup,
        InspectionKind::Return => p.ret,
    };
    let head = match &input.plate {
        PlateFact::Read { display, .. } => p.head_plate.replace("{plate}", display),
        PlateFact::Unreadable => p.head_unreadable.to_owned(),
        PlateFact::NotFound => p.head_not_found.to_owned(),
    };
    sentences.push(head.replace("{kind}", kind).replace("{site}", &input.site));
    match &input.comparison {
        Comparison::Compared { .. } => sentences.push(p.compared.to_owned()),
        Comparison::NoPickup => sentences.push(p.no_pickup.to_owned()),
        Comparison::NotApplicable => {}
    }
    if input.damage_model.is_none() && input.kind == InspectionKind::Return {
        sentences.push(p.no_model.to_owned());
    }
    for f in &input.findings {
        let pattern = match f.status {
            FindingStatus::New => p.new,
            FindingStatus::PossibleNewDamage => p.change,
            FindingStatus::PreExisting => p.pre_existing,
            FindingStatus::Baseline => p.baseline,
            FindingStatus::Confirmed => p.confirmed,
            FindingStatus::Rejected => continue,
        };
        sentences.push(finding_sentence(lang, pattern, f));
    }
    let reportable = input.findings.iter().any(ReportFinding::must_be_reported);
    if !reportable {
        sentences.push(
            match input.kind {
                InspectionKind::Pickup if input.findings.is_empty() => p.none_pickup,
                InspectionKind::Pickup => "",
                InspectionKind::Return => p.none_return,
            }
            .to_owned(),
        );
    } else {
        sentences.push(p.review.to_owned());
    }
    let total = input.frames_ok + input.frames_skipped;
    if total > 0 {
        sentences.push(
            p.frames
                .replace("{ok}", &input.frames_ok.to_string())
                .replace("{total}", &total.to_string()),
        );
    }
    sentences.retain(|s| !s.is_empty());
    Draft {
        summary: summary_of(input),
        narrative: sentences.join(" "),
    }
}

fn finding_sentence(lang: Language, pattern: &str, f: &ReportFinding) -> String {
    let class = class_term(lang, &f.class);
    // Sentence-initial capital only where the language's noun is not already.
    pattern
        .replace("{ref}", &f.reference)
        .replace("{class}", &capitalise(&class))
        .replace("{position}", &position_term(lang, &f.position))
        .replace("{conf}", &format!("{:.0}", f.confidence * 100.0))
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The findings as a report summary: what every writer's summary is
/// compared with.
pub fn summary_of(input: &ReportInput) -> ReportSummary {
    ReportSummary {
        plate: input.plate.canonical().map(str::to_owned),
        damages: input
            .findings
            .iter()
            .map(|f| SummaryDamage {
                finding: f.reference.clone(),
                class: f.class.clone(),
                position: f.position.clone(),
                status: f.status.as_str().to_owned(),
            })
            .collect(),
    }
}

/// The template as a [`ReportWriter`].
#[derive(Debug, Default, Clone, Copy)]
pub struct TemplateWriter;

#[async_trait]
impl ReportWriter for TemplateWriter {
    fn name(&self) -> &'static str {
        "template"
    }

    fn model(&self) -> Option<String> {
        None
    }

    async fn write(&self, input: &ReportInput) -> Result<Draft, WriteError> {
        Ok(render(input))
    }
}
