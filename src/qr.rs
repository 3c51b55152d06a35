//! A link as a QR code in the terminal: two modules per character cell with Unicode half
//! blocks, a quiet zone of 4 modules, dark modules on light as phone cameras expect. The
//! qrcodegen crate encodes; this file only draws.

use qrcodegen::{QrCode, QrCodeEcc};

/// The light border a reader needs around the code, in modules (ISO/IEC 18004 asks for 4).
const QUIET_ZONE: i32 = 4;

/// ANSI SGR: black ink on a white background, then back to the terminal's own colours.
const BLACK_ON_WHITE: &str = "\x1b[30;47m";
const RESET: &str = "\x1b[0m";

/// How characters stand for modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Palette {
    /// For a terminal: each line sets black on white itself, so the code is dark on light
    /// whatever the terminal's theme, and a block's ink is a dark module.
    BlackOnWhite,
    /// For a pipe or a log, where escape codes would be noise: plain characters whose ink is a
    /// light module, which reads dark on light in the usual light-on-dark terminal.
    InkIsLight,
}

/// The QR code of `text`, one line per two rows of modules, each line ending in `\n`; `None`
/// when `text` is more than a QR code holds (about 2,900 bytes, far beyond any link).
pub fn render(text: &str, palette: Palette) -> Option<String> {
    // Low error correction keeps the code small; a screen has no stains to correct, and
    // qrcodegen raises the level whenever that costs no extra size.
    let code = QrCode::encode_text(text, QrCodeEcc::Low).ok()?;
    let first = -QUIET_ZONE;
    let end = code.size() + QUIET_ZONE;
    // Outside the code qrcodegen reports light modules: that draws the quiet zone, and the
    // half row below an odd height.
    let inked = |x: i32, y: i32| code.get_module(x, y) == (palette == Palette::BlackOnWhite);
    let mut out = String::new();
    for y in (first..end).step_by(2) {
        if palette == Palette::BlackOnWhite {
            out.push_str(BLACK_ON_WHITE);
        }
        for x in first..end {
            out.push(match (inked(x, y), inked(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if palette == Palette::BlackOnWhite {
            out.push_str(RESET);
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "tg://proxy?server=203.0.113.7&port=443&secret=ee000102030405060708090a0b0c0d0e0f6578616d706c652e636f6d";

    /// The modules drawn by `text`, true for dark, as rows of the whole drawing.
    fn modules(text: &str, palette: Palette) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in text.lines() {
            let line = line
                .trim_start_matches(BLACK_ON_WHITE)
                .trim_end_matches(RESET);
            let (top, bottom): (Vec<bool>, Vec<bool>) = line
                .chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("{other:?} is not a half block"),
                })
                .unzip();
            let dark = |ink: Vec<bool>| -> Vec<bool> {
                ink.into_iter()
                    .map(|inked| inked == (palette == Palette::BlackOnWhite))
                    .collect()
            };
            rows.push(dark(top));
            rows.push(dark(bottom));
        }
        rows
    }

    fn assert_draws_the_code(palette: Palette) {
        let code = QrCode::encode_text(LINK, QrCodeEcc::Low).unwrap();
        let text = render(LINK, palette).unwrap();
        let rows = modules(&text, palette);
        let side = (code.size() + 2 * QUIET_ZONE) as usize;
        assert_eq!(rows.len(), side + 1, "odd sides end in half a line");
        for (y, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), side);
            for (x, &dark) in row.iter().enumerate() {
                let expected = code.get_module(x as i32 - QUIET_ZONE, y as i32 - QUIET_ZONE);
                assert_eq!(dark, expected, "module {x},{y}");
            }
        }
    }

    #[test]
    fn black_on_white_draws_every_module_and_the_quiet_zone() {
        assert_draws_the_code(Palette::BlackOnWhite);
    }

    #[test]
    fn ink_is_light_draws_every_module_and_the_quiet_zone() {
        assert_draws_the_code(Palette::InkIsLight);
    }

    #[test]
    fn black_on_white_sets_and_resets_the_colours_on_every_line() {
        let text = render(LINK, Palette::BlackOnWhite).unwrap();
        for line in text.lines() {
            assert!(line.starts_with(BLACK_ON_WHITE) && line.ends_with(RESET));
        }
        assert!(!render(LINK, Palette::InkIsLight).unwrap().contains('\x1b'));
    }

    #[test]
    fn a_usual_link_fits_an_80_column_terminal() {
        let text = render(LINK, Palette::InkIsLight).unwrap();
        let width = text.lines().map(|line| line.chars().count()).max();
        assert!(width <= Some(80), "{width:?}");
    }

    #[test]
    fn text_beyond_a_qr_code_has_no_drawing() {
        assert_eq!(render(&"a".repeat(3000), Palette::InkIsLight), None);
    }
}
