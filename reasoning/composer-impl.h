// The composer's reading of what the model wrote (composer.cpp), shared with its tests.
#pragma once

#include <string>
#include <vector>

namespace iris::reasoning::composer {

struct Outline
{
    std::string title;
    std::vector<std::string> sections;
};

// "# Title" and the numbered (or bulleted, or "## ") lines after it; an answer without a "# "
// line takes its first line as the title ("Article" when there is none); an outline without
// sections gets one section named like the article. At most max_sections sections.
Outline parse_outline(const std::string& text, int max_sections);

struct Mark
{
    size_t begin, end; // the whole "[[image: ...]]" in the text
    std::string description; // trimmed; may be empty
};

// The image marks in order; a mark left open ends at the end of its line.
std::vector<Mark> find_marks(const std::string& text);

} // namespace iris::reasoning::composer
