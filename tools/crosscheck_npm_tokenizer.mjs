// Cross-check tests/fixtures/tokenizer/corpus.jsonl against the npm package mistral-tokenizer-js.
// Usage: node tools/crosscheck_npm_tokenizer.mjs PATH/TO/mistral-tokenizer.js [corpus.jsonl]
// (get the package with `npm pack mistral-tokenizer-js@1.0.0` and untar it).
// The JS tokenizer treats "<s>"/"</s>"/"<unk>" as plain text and returns [] for "", so those lines
// are skipped; every other line must match exactly (BOS included).
import fs from "fs";
import { pathToFileURL } from "url";

const [jsPath, corpusPath = "tests/fixtures/tokenizer/corpus.jsonl"] = process.argv.slice(2);
const tok = (await import(pathToFileURL(jsPath).href)).default;
let same = 0, diff = 0, skipped = 0;
for (const line of fs.readFileSync(corpusPath, "utf8").split("\n")) {
  if (!line) continue;
  const { text, ids } = JSON.parse(line);
  if (text === "" || /<s>|<\/s>|<unk>/.test(text)) { skipped++; continue; }
  const got = tok.encode(text, true, true, false);
  if (JSON.stringify(got) === JSON.stringify(ids)) same++;
  else {
    diff++;
    if (diff <= 5) console.log("DIFF", JSON.stringify(text), JSON.stringify(ids), JSON.stringify(got));
  }
}
console.log(`npm mistral-tokenizer-js: ${same} agree, ${diff} differ, ${skipped} skipped`);
process.exit(diff === 0 ? 0 : 1);
