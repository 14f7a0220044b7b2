//! Words for damage classes and camera positions in each report language:
//! what the template writes, what the prompts show, and what the grounding
//! check looks for when it reads a narrative back.
//!
//! Classes are those of the CarDD data set the damage models are trained on
//! (`dent`, `scratch`, `crack`, `glass_shatter`, `lamp_broken`, `tire_flat`)
//! plus `change` (a changed region change detection found). A model with
//! other class names still works: its names are used verbatim.
//!
//! Reading back matches word stems at word starts, case-insensitively:
//! `kratz` finds "Kratzer" and "Kratzspuren". Stems are chosen so they do
//! not start ordinary words of the same language (`dent` would match
//! nothing but "dent", "dents", "dented"); the tests hold each language's
//! template and prompts to that.

use super::Language;

/// The damage classes the lexicon knows.
pub const CLASSES: [&str; 7] = [
    "dent",
    "scratch",
    "crack",
    "glass_shatter",
    "lamp_broken",
    "tire_flat",
    "change",
];

/// The camera positions the lexicon knows.
pub const POSITIONS: [&str; 8] = [
    "front",
    "rear",
    "left",
    "right",
    "front_left",
    "front_right",
    "rear_left",
    "rear_right",
];

/// The term the template writes for a class.
pub fn class_term(lang: Language, class: &str) -> String {
    let term = match (lang, class) {
        (Language::En, "dent") => "dent",
        (Language::En, "scratch") => "scratch",
        (Language::En, "crack") => "crack",
        (Language::En, "glass_shatter") => "shattered glass",
        (Language::En, "lamp_broken") => "broken lamp",
        (Language::En, "tire_flat") => "flat tyre",
        (Language::En, "change") => "possible new damage",
        (Language::De, "dent") => "Delle",
        (Language::De, "scratch") => "Kratzer",
        (Language::De, "crack") => "Riss",
        (Language::De, "glass_shatter") => "Glasbruch",
        (Language::De, "lamp_broken") => "defekte Leuchte",
        (Language::De, "tire_flat") => "platter Reifen",
        (Language::De, "change") => "möglicher neuer Schaden",
        (Language::Fr, "dent") => "bosse",
        (Language::Fr, "scratch") => "rayure",
        (Language::Fr, "crack") => "fissure",
        (Language::Fr, "glass_shatter") => "vitre brisée",
        (Language::Fr, "lamp_broken") => "feu cassé",
        (Language::Fr, "tire_flat") => "pneu crevé",
        (Language::Fr, "change") => "dommage nouveau possible",
        (Language::It, "dent") => "ammaccatura",
        (Language::It, "scratch") => "graffio",
        (Language::It, "crack") => "crepa",
        (Language::It, "glass_shatter") => "vetro rotto",
        (Language::It, "lamp_broken") => "fanale rotto",
        (Language::It, "tire_flat") => "pneumatico a terra",
        (Language::It, "change") => "possibile nuovo danno",
        (Language::Es, "dent") => "abolladura",
        (Language::Es, "scratch") => "arañazo",
        (Language::Es, "crack") => "grieta",
        (Language::Es, "glass_shatter") => "cristal roto",
        (Language::Es, "lamp_broken") => "faro roto",
        (Language::Es, "tire_flat") => "neumático pinchado",
        (Language::Es, "change") => "posible daño nuevo",
        (Language::Nl, "dent") => "deuk",
        (Language::Nl, "scratch") => "kras",
        (Language::Nl, "crack") => "barst",
        (Language::Nl, "glass_shatter") => "gebroken ruit",
        (Language::Nl, "lamp_broken") => "kapotte lamp",
        (Language::Nl, "tire_flat") => "lekke band",
        (Language::Nl, "change") => "mogelijke nieuwe schade",
        _ => return class.replace('_', " "),
    };
    term.to_owned()
}

/// The term the template writes for a camera position ("at the front").
pub fn position_term(lang: Language, position: &str) -> String {
    let term = match (lang, position) {
        (Language::En, "front") => "front",
        (Language::En, "rear") => "rear",
        (Language::En, "left") => "left side",
        (Language::En, "right") => "right side",
        (Language::En, "front_left") => "front left",
        (Language::En, "front_right") => "front right",
        (Language::En, "rear_left") => "rear left",
        (Language::En, "rear_right") => "rear right",
        (Language::De, "front") => "Front",
        (Language::De, "rear") => "Heck",
        (Language::De, "left") => "linke Seite",
        (Language::De, "right") => "rechte Seite",
        (Language::De, "front_left") => "Front links",
        (Language::De, "front_right") => "Front rechts",
        (Language::De, "rear_left") => "Heck links",
        (Language::De, "rear_right") => "Heck rechts",
        (Language::Fr, "front") => "avant",
        (Language::Fr, "rear") => "arrière",
        (Language::Fr, "left") => "côté gauche",
        (Language::Fr, "right") => "côté droit",
        (Language::Fr, "front_left") => "avant gauche",
        (Language::Fr, "front_right") => "avant droit",
        (Language::Fr, "rear_left") => "arrière gauche",
        (Language::Fr, "rear_right") => "arrière droit",
        (Language::It, "front") => "anteriore",
        (Language::It, "rear") => "posteriore",
        (Language::It, "left") => "lato sinistro",
        (Language::It, "right") => "lato destro",
        (Language::It, "front_left") => "anteriore sinistro",
        (Language::It, "front_right") => "anteriore destro",
        (Language::It, "rear_left") => "posteriore sinistro",
        (Language::It, "rear_right") => "posteriore destro",
        (Language::Es, "front") => "delantera",
        (Language::Es, "rear") => "trasera",
        (Language::Es, "left") => "lado izquierdo",
        (Language::Es, "right") => "lado derecho",
        (Language::Es, "front_left") => "delantera izquierda",
        (Language::Es, "front_right") => "delantera derecha",
        (Language::Es, "rear_left") => "trasera izquierda",
        (Language::Es, "rear_right") => "trasera derecha",
        (Language::Nl, "front") => "voorkant",
        (Language::Nl, "rear") => "achterkant",
        (Language::Nl, "left") => "linkerkant",
        (Language::Nl, "right") => "rechterkant",
        (Language::Nl, "front_left") => "linksvoor",
        (Language::Nl, "front_right") => "rechtsvoor",
        (Language::Nl, "rear_left") => "linksachter",
        (Language::Nl, "rear_right") => "rechtsachter",
        _ => return position.replace('_', " "),
    };
    term.to_owned()
}

/// Stems that name a damage class in a narrative. English stems are
/// accepted in every language (models fall back to English terms).
fn class_stems(lang: Language) -> &'static [(&'static str, &'static [&'static str])] {
    match lang {
        Language::En => &[
            ("dent", &["dent"]),
            ("scratch", &["scratch", "scuff"]),
            ("crack", &["crack"]),
            (
                "glass_shatter",
                &["shatter", "broken glass", "smashed", "broken window"],
            ),
            (
                "lamp_broken",
                &[
                    "broken lamp",
                    "broken light",
                    "broken headl",
                    "broken taill",
                ],
            ),
            ("tire_flat", &["flat tyre", "flat tire", "punctur"]),
        ],
        Language::De => &[
            ("dent", &["delle", "beule", "eindellung"]),
            ("scratch", &["kratz", "schramme"]),
            ("crack", &["riss", "sprung"]),
            (
                "glass_shatter",
                &["glasbruch", "scheibenbruch", "zersplitter"],
            ),
            (
                "lamp_broken",
                &["defekte leuchte", "defekter scheinwerfer", "leuchte defekt"],
            ),
            (
                "tire_flat",
                &["platter reifen", "platten reifen", "reifenpanne"],
            ),
        ],
        Language::Fr => &[
            ("dent", &["bosse", "enfoncement"]),
            ("scratch", &["rayure", "éraflure", "griffure"]),
            ("crack", &["fissure", "fêlure"]),
            (
                "glass_shatter",
                &["vitre brisée", "bris de glace", "verre brisé"],
            ),
            ("lamp_broken", &["feu cassé", "phare cassé", "feu brisé"]),
            ("tire_flat", &["pneu crevé", "pneu à plat", "crevaison"]),
        ],
        Language::It => &[
            ("dent", &["ammaccatur", "bozz"]),
            ("scratch", &["graffi", "rigatur", "striscia"]),
            ("crack", &["crepa", "crepe", "incrinatur"]),
            (
                "glass_shatter",
                &["vetro rotto", "vetri rotti", "cristallo rotto"],
            ),
            ("lamp_broken", &["fanale rotto", "faro rotto", "luce rotta"]),
            (
                "tire_flat",
                &["pneumatico a terra", "gomma a terra", "foratura"],
            ),
        ],
        Language::Es => &[
            ("dent", &["abolladur", "bollo"]),
            ("scratch", &["arañazo", "rayón", "rayado", "rasguño"]),
            ("crack", &["grieta", "fisura"]),
            (
                "glass_shatter",
                &["cristal roto", "cristales rotos", "vidrio roto"],
            ),
            ("lamp_broken", &["faro roto", "piloto roto", "luz rota"]),
            (
                "tire_flat",
                &["neumático pinchado", "pinchazo", "rueda pinchada"],
            ),
        ],
        Language::Nl => &[
            ("dent", &["deuk", "indeuking"]),
            ("scratch", &["kras", "schram"]),
            ("crack", &["barst", "scheur"]),
            (
                "glass_shatter",
                &["gebroken ruit", "glasbreuk", "gebroken glas"],
            ),
            (
                "lamp_broken",
                &["kapotte lamp", "kapot licht", "kapotte koplamp"],
            ),
            ("tire_flat", &["lekke band", "platte band"]),
        ],
    }
}

/// Stems that name a camera position, longest first within a language so
/// "front left" is found before "front".
fn position_stems(lang: Language) -> &'static [(&'static str, &'static [&'static str])] {
    match lang {
        Language::En => &[
            ("front_left", &["front left", "front-left", "left front"]),
            (
                "front_right",
                &["front right", "front-right", "right front"],
            ),
            ("rear_left", &["rear left", "rear-left", "left rear"]),
            ("rear_right", &["rear right", "rear-right", "right rear"]),
            ("front", &["front", "bonnet", "hood"]),
            ("rear", &["rear", "back of", "boot", "trunk"]),
            ("left", &["left"]),
            ("right", &["right"]),
        ],
        Language::De => &[
            ("front_left", &["front links", "vorne links", "links vorne"]),
            (
                "front_right",
                &["front rechts", "vorne rechts", "rechts vorne"],
            ),
            ("rear_left", &["heck links", "hinten links", "links hinten"]),
            (
                "rear_right",
                &["heck rechts", "hinten rechts", "rechts hinten"],
            ),
            ("front", &["front", "vorne", "vorder", "motorhaube"]),
            ("rear", &["heck", "hinten", "hinter"]),
            ("left", &["linke", "links"]),
            ("right", &["rechte", "rechts"]),
        ],
        Language::Fr => &[
            ("front_left", &["avant gauche"]),
            ("front_right", &["avant droit"]),
            ("rear_left", &["arrière gauche"]),
            ("rear_right", &["arrière droit"]),
            ("front", &["avant"]),
            ("rear", &["arrière"]),
            ("left", &["gauche"]),
            ("right", &["droit"]),
        ],
        Language::It => &[
            ("front_left", &["anteriore sinistr"]),
            ("front_right", &["anteriore destr"]),
            ("rear_left", &["posteriore sinistr"]),
            ("rear_right", &["posteriore destr"]),
            ("front", &["anterior", "davanti"]),
            ("rear", &["posterior", "dietro"]),
            ("left", &["sinistr"]),
            ("right", &["destr"]),
        ],
        Language::Es => &[
            (
                "front_left",
                &["delantera izquierda", "delantero izquierdo"],
            ),
            ("front_right", &["delantera derecha", "delantero derecho"]),
            ("rear_left", &["trasera izquierda", "trasero izquierdo"]),
            ("rear_right", &["trasera derecha", "trasero derecho"]),
            ("front", &["delanter", "frontal"]),
            ("rear", &["traser"]),
            ("left", &["izquierd"]),
            ("right", &["derech"]),
        ],
        Language::Nl => &[
            ("front_left", &["linksvoor", "links voor"]),
            ("front_right", &["rechtsvoor", "rechts voor"]),
            ("rear_left", &["linksachter", "links achter"]),
            ("rear_right", &["rechtsachter", "rechts achter"]),
            ("front", &["voorkant", "voorzijde", "vooraan"]),
            ("rear", &["achterkant", "achterzijde", "achteraan"]),
            ("left", &["linker", "links"]),
            ("right", &["rechter", "rechts"]),
        ],
    }
}

/// Lower-cases for matching.
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// The languages a text in `lang` is read back in: its own and English
/// (class names and positions often stay English in any language).
fn read_back_languages(lang: Language) -> impl Iterator<Item = Language> {
    std::iter::once(lang).chain((lang != Language::En).then_some(Language::En))
}

/// Whether `stem` occurs in `folded` at the start of a word.
fn has_stem(folded: &str, stem: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = folded[from..].find(stem) {
        let pos = from + at;
        let before = folded[..pos].chars().next_back();
        if before.is_none_or(|c| !c.is_alphanumeric()) {
            return Some(pos);
        }
        from = pos + stem.len();
    }
    None
}

/// The damage classes a text names, each once, with where it first does.
pub fn classes_in(lang: Language, text: &str) -> Vec<(&'static str, usize)> {
    let folded = fold(text);
    let mut found: Vec<(&'static str, usize)> = Vec::new();
    for l in read_back_languages(lang) {
        for (class, stems) in class_stems(l) {
            if let Some(pos) = stems.iter().filter_map(|s| has_stem(&folded, s)).min() {
                match found.iter_mut().find(|(c, _)| c == class) {
                    Some(entry) => entry.1 = entry.1.min(pos),
                    None => found.push((class, pos)),
                }
            }
        }
    }
    found.sort_by_key(|(_, pos)| *pos);
    found
}

/// Phrasings of "possible new damage" (a region change detection found),
/// inflections included: the template's term and what a writer may say
/// instead.
fn change_stems(lang: Language) -> &'static [&'static str] {
    match lang {
        Language::En => &[
            "possible new damage",
            "possibly new damage",
            "possible damage",
            "potential new damage",
        ],
        Language::De => &[
            "möglicher neuer schaden",
            "möglichen neuen schaden",
            "mögliche neue schäden",
            "möglicher schaden",
            "möglichen schaden",
            "mögliche neue beschädigung",
        ],
        Language::Fr => &[
            "dommage nouveau possible",
            "possible nouveau dommage",
            "possible dommage",
            "nouveau dommage possible",
            "dommages nouveaux possibles",
        ],
        Language::It => &[
            "possibile nuovo danno",
            "possibili nuovi danni",
            "possibile danno",
            "possibili danni",
        ],
        Language::Es => &[
            "posible daño nuevo",
            "posible nuevo daño",
            "posibles daños nuevos",
            "posible daño",
            "posibles daños",
        ],
        Language::Nl => &["mogelijke nieuwe schade", "mogelijke schade"],
    }
}

/// Whether a text speaks of a possible new damage (the `change` class).
pub fn names_change(lang: Language, text: &str) -> bool {
    let folded = fold(text);
    read_back_languages(lang).any(|l| {
        change_stems(l)
            .iter()
            .any(|s| has_stem(&folded, s).is_some())
    })
}

/// The positions a text names. A compound position ("front left") hides
/// its parts ("front", "left") where it matched.
/// Words that say damage was already there at pickup (folded stems).
fn pre_existing_stems(lang: Language) -> &'static [&'static str] {
    match lang {
        Language::En => &[
            "already",
            "pre-existing",
            "pre_existing",
            "preexisting",
            "was there at pickup",
            "were there at pickup",
            "was there at the pickup",
            "previously recorded",
            "old damage",
            "known damage",
        ],
        Language::De => &[
            "bereits",
            "schon bei",
            "schon vorhanden",
            "vorbestehend",
            "vorschaden",
            "altschaden",
        ],
        Language::Fr => &["déjà", "préexistant", "dommage existant"],
        Language::It => &["già", "preesistent", "danno esistente"],
        Language::Es => &[
            "ya registrad",
            "ya exist",
            "ya estaba",
            "ya present",
            "preexistent",
        ],
        Language::Nl => &[
            "al vastgelegd",
            "al aanwezig",
            "al bekend",
            "reeds",
            "bestaande schade",
        ],
    }
}

/// Whether `text` says that damage was already there at pickup.
pub fn names_pre_existing(lang: Language, text: &str) -> bool {
    let folded = fold(text);
    read_back_languages(lang).any(|l| {
        pre_existing_stems(l)
            .iter()
            .any(|s| has_stem(&folded, s).is_some())
    })
}

pub fn positions_in(lang: Language, text: &str) -> Vec<&'static str> {
    let mut folded = fold(text);
    let mut found = Vec::new();
    for l in read_back_languages(lang) {
        for (position, stems) in position_stems(l) {
            for stem in *stems {
                while let Some(pos) = has_stem(&folded, stem) {
                    if !found.contains(position) {
                        found.push(*position);
                    }
                    // Blank the match so its parts are not found again.
                    let blank = " ".repeat(stem.len());
                    folded.replace_range(pos..pos + stem.len(), &blank);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_and_position_term_reads_back_as_itself() {
        for lang in Language::ALL {
            for class in CLASSES.iter().filter(|c| **c != "change") {
                let term = class_term(lang, class);
                let found: Vec<_> = classes_in(lang, &term)
                    .into_iter()
                    .map(|(c, _)| c)
                    .collect();
                assert_eq!(found, vec![*class], "{lang} {class}: {term:?}");
            }
            for position in POSITIONS {
                let term = position_term(lang, position);
                assert_eq!(
                    positions_in(lang, &term),
                    vec![position],
                    "{lang} {position}: {term:?}"
                );
            }
        }
    }

    #[test]
    fn the_change_term_reads_back_in_every_language() {
        for lang in Language::ALL {
            let term = class_term(lang, "change");
            assert!(names_change(lang, &term), "{lang}: {term:?}");
        }
        assert!(names_change(
            Language::De,
            "An der linken Seite gibt es einen möglichen neuen Schaden."
        ));
        assert!(!names_change(Language::En, "No damage was found."));
    }

    #[test]
    fn stems_match_at_word_starts_only() {
        assert!(classes_in(Language::En, "an incident was recorded").is_empty());
        assert_eq!(
            classes_in(Language::En, "Two dents and a scratch"),
            vec![("dent", 4), ("scratch", 16)]
        );
        assert_eq!(
            classes_in(Language::De, "Kratzspuren an der Tür"),
            vec![("scratch", 0)]
        );
    }
}
