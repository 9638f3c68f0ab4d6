// tools — synthetic tokenizers for random checkpoints of real shapes (`iris make-random`), so that
// benchmarks and tests run the real vocabulary sizes and special-token ids without downloading
// the real files. Each is trained like a real BPE, on a small built-in corpus of common English
// words, punctuation and the default Chinese system message, so English prompts get realistic
// token counts; the rest of the vocabulary is filled with merges ordinary text seldom reaches.
// The file layouts are docs/tokenizer.md §2 and §6 (Qwen2) and §3 and §7 (InternLM2).
//
//   iris::tools::write_qwen2_tokenizer(dir, 151674);      // internvl2_5-1b's vocabulary
//
// Deterministic: the same vocab_size writes the same bytes. Error(io) when a file cannot be
// written, Error(internal) when vocab_size is too small for the special tokens and the bytes.
#pragma once

#include <cstdint>
#include <filesystem>

namespace iris::tools {

// A Qwen2 byte-level BPE of vocab_size ids, the last 31 the added tokens from <|endoftext|>:
// writes vocab.json, merges.txt, tokenizer_config.json, added_tokens.json and
// special_tokens_map.json into dir.
void write_qwen2_tokenizer(const std::filesystem::path& dir, int32_t vocab_size);

// An InternLM2 SentencePiece BPE of vocab_size ids, the last 9 InternVL's added tokens (<img>
// ... </box>): writes tokenizer.model, tokenizer_config.json, added_tokens.json and
// special_tokens_map.json into dir.
void write_internlm2_tokenizer(const std::filesystem::path& dir, int32_t vocab_size);

} // namespace iris::tools
