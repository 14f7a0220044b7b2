//! The words of the export documents around the report (headings, table
//! columns, statuses) in each report language. Damage classes and camera
//! positions come from the lexicon, so exports and narratives agree.

use crate::report::Language;
use crate::store::FindingStatus;

/// The fixed words of one language.
pub(crate) struct Labels {
    pub title: &'static str,
    pub plate: &'static str,
    pub plate_unreadable: &'static str,
    pub plate_not_found: &'static str,
    pub site: &'static str,
    pub device: &'static str,
    pub started: &'static str,
    pub processed: &'static str,
    pub writer: &'static str,
    pub report: &'static str,
    pub findings: &'static str,
    pub no_findings: &'static str,
    pub reference: &'static str,
    pub class: &'static str,
    pub position: &'static str,
    pub status: &'static str,
    pub confidence: &'static str,
    pub images: &'static str,
    pub comparison: &'static str,
    pub pickup: &'static str,
    pub ret: &'static str,
    pub unavailable: &'static str,
    statuses: [&'static str; 6],
}

impl Labels {
    /// The status word, in `FindingStatus::ALL` order.
    pub fn status_term(&self, status: FindingStatus) -> &'static str {
        let i = FindingStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        self.statuses[i]
    }
}

pub(crate) fn labels(lang: Language) -> &'static Labels {
    match lang {
        Language::En => &Labels {
            title: "Inspection report",
            plate: "Plate",
            plate_unreadable: "unreadable",
            plate_not_found: "not seen",
            site: "Site",
            device: "Device",
            started: "Started",
            processed: "Processed",
            writer: "Written by",
            report: "Report",
            findings: "Findings",
            no_findings: "No findings.",
            reference: "Ref.",
            class: "Damage",
            position: "Position",
            status: "Status",
            confidence: "Confidence",
            images: "Images",
            comparison: "Pickup and return",
            pickup: "Pickup",
            ret: "Return",
            unavailable: "image unavailable",
            statuses: [
                "at pickup",
                "new",
                "pre-existing",
                "possible new damage",
                "confirmed",
                "rejected",
            ],
        },
        Language::De => &Labels {
            title: "Prüfbericht",
            plate: "Kennzeichen",
            plate_unreadable: "nicht lesbar",
            plate_not_found: "nicht erkannt",
            site: "Standort",
            device: "Gerät",
            started: "Beginn",
            processed: "Verarbeitet",
            writer: "Verfasst von",
            report: "Bericht",
            findings: "Befunde",
            no_findings: "Keine Befunde.",
            reference: "Nr.",
            class: "Schaden",
            position: "Position",
            status: "Status",
            confidence: "Konfidenz",
            images: "Bilder",
            comparison: "Übergabe und Rückgabe",
            pickup: "Übergabe",
            ret: "Rückgabe",
            unavailable: "Bild nicht verfügbar",
            statuses: [
                "bei Übergabe",
                "neu",
                "vorbestehend",
                "möglicher neuer Schaden",
                "bestätigt",
                "abgelehnt",
            ],
        },
        Language::Fr => &Labels {
            title: "Rapport d'inspection",
            plate: "Plaque",
            plate_unreadable: "illisible",
            plate_not_found: "non vue",
            site: "Site",
            device: "Appareil",
            started: "Début",
            processed: "Traité",
            writer: "Rédigé par",
            report: "Rapport",
            findings: "Constats",
            no_findings: "Aucun constat.",
            reference: "Réf.",
            class: "Dommage",
            position: "Position",
            status: "Statut",
            confidence: "Confiance",
            images: "Images",
            comparison: "Départ et retour",
            pickup: "Départ",
            ret: "Retour",
            unavailable: "image indisponible",
            statuses: [
                "au départ",
                "nouveau",
                "préexistant",
                "dommage nouveau possible",
                "confirmé",
                "rejeté",
            ],
        },
        Language::It => &Labels {
            title: "Rapporto di ispezione",
            plate: "Targa",
            plate_unreadable: "illeggibile",
            plate_not_found: "non rilevata",
            site: "Sede",
            device: "Dispositivo",
            started: "Inizio",
            processed: "Elaborato",
            writer: "Redatto da",
            report: "Rapporto",
            findings: "Rilievi",
            no_findings: "Nessun rilievo.",
            reference: "Rif.",
            class: "Danno",
            position: "Posizione",
            status: "Stato",
            confidence: "Confidenza",
            images: "Immagini",
            comparison: "Ritiro e riconsegna",
            pickup: "Ritiro",
            ret: "Riconsegna",
            unavailable: "immagine non disponibile",
            statuses: [
                "al ritiro",
                "nuovo",
                "preesistente",
                "possibile nuovo danno",
                "confermato",
                "respinto",
            ],
        },
        Language::Es => &Labels {
            title: "Informe de inspección",
            plate: "Matrícula",
            plate_unreadable: "ilegible",
            plate_not_found: "no vista",
            site: "Sede",
            device: "Dispositivo",
            started: "Inicio",
            processed: "Procesado",
            writer: "Redactado por",
            report: "Informe",
            findings: "Hallazgos",
            no_findings: "Ningún hallazgo.",
            reference: "Ref.",
            class: "Daño",
            position: "Posición",
            status: "Estado",
            confidence: "Confianza",
            images: "Imágenes",
            comparison: "Entrega y devolución",
            pickup: "Entrega",
            ret: "Devolución",
            unavailable: "imagen no disponible",
            statuses: [
                "en la entrega",
                "nuevo",
                "preexistente",
                "posible daño nuevo",
                "confirmado",
                "rechazado",
            ],
        },
        Language::Nl => &Labels {
            title: "Inspectierapport",
            plate: "Kenteken",
            plate_unreadable: "onleesbaar",
            plate_not_found: "niet gezien",
            site: "Locatie",
            device: "Apparaat",
            started: "Gestart",
            processed: "Verwerkt",
            writer: "Geschreven door",
            report: "Rapport",
            findings: "Bevindingen",
            no_findings: "Geen bevindingen.",
            reference: "Ref.",
            class: "Schade",
            position: "Positie",
            status: "Status",
            confidence: "Betrouwbaarheid",
            images: "Beelden",
            comparison: "Uitgifte en inlevering",
            pickup: "Uitgifte",
            ret: "Inlevering",
            unavailable: "beeld niet beschikbaar",
            statuses: [
                "bij uitgifte",
                "nieuw",
                "bestaand",
                "mogelijke nieuwe schade",
                "bevestigd",
                "afgewezen",
            ],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_names_every_status_differently() {
        for lang in Language::ALL {
            let l = labels(lang);
            let mut words: Vec<_> = FindingStatus::ALL
                .iter()
                .map(|s| l.status_term(*s))
                .collect();
            words.sort();
            words.dedup();
            assert_eq!(words.len(), FindingStatus::ALL.len(), "{lang}");
        }
        assert_eq!(labels(Language::De).status_term(FindingStatus::New), "neu");
    }
}
