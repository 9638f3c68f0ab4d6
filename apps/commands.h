// The iris subcommands. Each takes the arguments after its name and returns the exit status;
// errors are thrown as iris::Error and reported by main.
#pragma once

namespace iris::app {

int cmd_info(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_prompt(int argc, char** argv);
int cmd_preprocess(int argc, char** argv);
int cmd_forward(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_ask(int argc, char** argv);
int cmd_chat(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_make_random(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_calibrate_kv(int argc, char** argv);
int cmd_kv_eval(int argc, char** argv);
int cmd_quant_eval(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_watch(int argc, char** argv);
int cmd_live(int argc, char** argv);
int cmd_recall(int argc, char** argv);
int cmd_memory(int argc, char** argv);
int cmd_serve(int argc, char** argv);
int cmd_compose(int argc, char** argv);

} // namespace iris::app
