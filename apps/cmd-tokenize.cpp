#include "apps/commands.h"
#include "apps/common.h"
#include "model/model.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace iris::app {

int cmd_tokenize(int argc, char** argv)
{
    Args args(argc, argv, {"--model", "--mmproj", "--file"},
              {"--json", "--no-bos", "-h", "--help"});
    if (args.flag("-h") || args.flag("--help")) {
        std::printf(
            "usage: iris tokenize --model DIR [--json] [--no-bos] (--file FILE | TEXT)\n"
            "\n"
            "Prints the token ids of TEXT (or of FILE, read byte for byte) with the model's "
            "tokenizer.\n"
            "DIR may hold only the tokenizer files. A leading BOS is added where the tokenizer\n"
            "does so (InternLM2's <s>) unless --no-bos is given. --json prints a JSON array.\n");
        return 0;
    }
    std::string text;
    if (args.has("--file")) {
        if (!args.positionals().empty())
            throw Error(ErrorKind::invalid_argument, "give either --file or TEXT, not both");
        std::ifstream in(args.str("--file"), std::ios::binary);
        if (!in) throw Error(ErrorKind::not_found, "cannot open '" + args.str("--file") + "'");
        std::ostringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    } else if (args.positionals().size() == 1) {
        text = args.positionals()[0];
    } else {
        throw Error(ErrorKind::invalid_argument,
                    "give the text to tokenize (one argument) or --file FILE");
    }
    auto tok = model::Tokenizer::load(model_dir(args));
    print_ids(tok->encode(text, !args.flag("--no-bos")), args.flag("--json"));
    return 0;
}

} // namespace iris::app
