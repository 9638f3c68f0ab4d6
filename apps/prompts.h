// Prompts for the commands that compare a model with itself under another setting (iris
// kv-eval, iris quant-eval): templated prompts of sample images and filler text, and the KL
// divergence of two next-token distributions.
#pragma once

#include "apps/args.h"
#include "reasoning/engine.h"

#include <string>
#include <vector>

namespace iris::app {

struct Prompt
{
    std::string name;
    std::vector<int32_t> ids;
    std::vector<float> visual;
};

// The templated prompt of images and text, with filler sentences appended until it holds at
// least min_tokens tokens.
Prompt make_prompt(const reasoning::Engine& engine, const std::string& name,
                   const std::vector<Image>& images, std::string text, int min_tokens);

// One prompt per --data file (text, or an image with filler text up to min_tokens), or, without
// any, one prompt of sample images and filler text per entry of `targets` (token counts).
std::vector<Prompt> prompts_from_args(const reasoning::Engine& engine, const Args& args,
                                      int min_tokens, const std::vector<int>& targets);

// KL(p || q) of the softmax distributions of two logit vectors, in nats.
double kl_divergence(const std::vector<float>& p_logits, const std::vector<float>& q_logits);

} // namespace iris::app
