//! Reads QR codes drawn with Unicode half blocks back into text, as a phone would scan them,
//! with the rqrr decoder. Expects plain characters whose ink is a light module, as feint draws
//! them on a pipe.

/// Pixels per module in the bitmap handed to the decoder.
const SCALE: usize = 4;

/// The text of every QR code drawn in `output`, in order. A drawing is a run of lines made
/// only of `█`, `▀`, `▄` and spaces, all of one width; other lines are ignored.
pub fn decode_all(output: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut drawing: Vec<&str> = Vec::new();
    for line in output.lines().chain(std::iter::once("")) {
        let is_drawing = !line.is_empty()
            && line.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '))
            && line.contains('█');
        let same_width = match drawing.first() {
            Some(first) => first.chars().count() == line.chars().count(),
            None => true,
        };
        if is_drawing && same_width {
            drawing.push(line);
            continue;
        }
        if !drawing.is_empty() {
            found.extend(decode(&drawing));
            drawing.clear();
        }
        if is_drawing {
            drawing.push(line);
        }
    }
    found
}

/// Decodes one drawing; `None` when the decoder finds no readable code in it.
pub fn decode(lines: &[&str]) -> Option<String> {
    // Rows of modules, true for dark: ink is light, so a blank half is dark.
    let mut dark: Vec<Vec<bool>> = Vec::new();
    for line in lines {
        let (top, bottom): (Vec<bool>, Vec<bool>) = line
            .chars()
            .map(|c| match c {
                '█' => (false, false),
                '▀' => (false, true),
                '▄' => (true, false),
                _ => (true, true),
            })
            .unzip();
        dark.push(top);
        dark.push(bottom);
    }
    let width = dark.first()?.len();
    let height = dark.len();
    let mut image =
        rqrr::PreparedImage::prepare_from_bitmap(width * SCALE, height * SCALE, |x, y| {
            dark[y / SCALE][x / SCALE]
        });
    let grids = image.detect_grids();
    let (_, text) = grids.first()?.decode().ok()?;
    Some(text)
}
