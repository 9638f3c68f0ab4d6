// Self-contained HTML: Markdown rendered by cmark, pages repaired and cut off from the network
// with libxml2's HTML parser.
#include "reasoning/composer.h"

#include <cmark.h>
#include <libxml/HTMLparser.h>
#include <libxml/HTMLtree.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>

namespace iris::reasoning {
namespace {

// Everything a page may use comes from inside it; the policy also stops what the sanitiser
// below might miss.
constexpr const char* kPolicy
    = "default-src 'none'; img-src data:; media-src data:; font-src data:; "
      "style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'none'; base-uri 'none'";

constexpr const char* kArticleStyle
    = "body{font-family:Georgia,'DejaVu Serif',serif;max-width:46em;margin:2em auto;padding:0 1em;"
      "line-height:1.6;color:#222;background:#fdfdfb}"
      "h1,h2,h3{font-family:'DejaVu Sans',Arial,sans-serif;line-height:1.25}"
      "img{display:block;max-width:100%;margin:1em auto 0.3em;border-radius:4px}"
      "p>em:only-child,img+em{display:block;text-align:center;color:#555;font-size:0.9em}"
      "pre{background:#f3f3f0;padding:0.8em;overflow:auto}"
      "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:0.3em 0.6em}";

bool starts_with_ci(std::string_view s, std::string_view prefix)
{
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

std::string lower(std::string_view s)
{
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string escape_text(std::string_view s)
{
    std::string out;
    for (char c : s) {
        if (c == '<')
            out += "&lt;";
        else if (c == '>')
            out += "&gt;";
        else if (c == '&')
            out += "&amp;";
        else if (c == '"')
            out += "&quot;";
        else
            out += c;
    }
    return out;
}

// CSS with every url() that is not data: replaced by none and every @import rule removed.
std::string clean_css(const std::string& css)
{
    std::string out;
    size_t i = 0;
    while (i < css.size()) {
        std::string_view rest(css.data() + i, css.size() - i);
        if (starts_with_ci(rest, "@import")) {
            size_t semi = css.find(';', i);
            i = semi == std::string::npos ? css.size() : semi + 1;
            continue;
        }
        if (starts_with_ci(rest, "url(")) {
            size_t close = css.find(')', i);
            if (close == std::string::npos) close = css.size() - 1;
            std::string target(css.data() + i + 4, close - i - 4);
            size_t b = target.find_first_not_of(" \t\n'\"");
            bool data = b != std::string::npos
                && starts_with_ci(std::string_view(target).substr(b), "data:");
            out += data ? css.substr(i, close + 1 - i) : std::string("none");
            i = close + 1;
            continue;
        }
        out += css[i++];
    }
    return out;
}

std::string attr(xmlNodePtr node, const char* name)
{
    xmlChar* v = xmlGetProp(node, BAD_CAST name);
    if (!v) return {};
    std::string s(reinterpret_cast<const char*>(v));
    xmlFree(v);
    return s;
}

void sanitize(xmlNodePtr node, const std::map<std::string, std::string>& images)
{
    // Elements that only fetch are removed; those that embed another document become a plain
    // <div> that keeps their fallback content (libxml2's HTML 4 parser also nests whatever
    // follows an <embed> inside it).
    static const char* kEmbedders[]
        = {"iframe", "frame", "frameset", "object", "embed", "applet", "portal"};
    for (xmlNodePtr child = node->children; child;) {
        xmlNodePtr next = child->next;
        if (child->type == XML_ELEMENT_NODE) {
            std::string name = lower(reinterpret_cast<const char*>(child->name));
            // Only ours may set a policy or a charset; a refresh is navigation nobody asked for.
            bool drop = name == "link" || name == "base"
                || (name == "meta"
                    && (!attr(child, "http-equiv").empty() || !attr(child, "charset").empty()))
                || (name == "script" && !attr(child, "src").empty());
            if (drop) {
                xmlUnlinkNode(child);
                xmlFreeNode(child);
                child = next;
                continue;
            }
            if (std::find(std::begin(kEmbedders), std::end(kEmbedders), name)
                != std::end(kEmbedders)) {
                xmlNodeSetName(child, BAD_CAST "div");
                while (child->properties) xmlRemoveProp(child->properties);
                name = "div";
            }
            for (xmlAttrPtr a = child->properties; a;) {
                xmlAttrPtr an = a->next;
                std::string aname = lower(reinterpret_cast<const char*>(a->name));
                xmlChar* raw = xmlNodeListGetString(child->doc, a->children, 1);
                std::string value = raw ? reinterpret_cast<const char*>(raw) : "";
                if (raw) xmlFree(raw);
                std::string_view v = value;
                while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front())))
                    v.remove_prefix(1);
                bool remove = false;
                if (aname == "src" || aname == "poster" || aname == "background"
                    || aname == "data") {
                    auto it = images.find(value);
                    if (it != images.end())
                        xmlSetProp(child, a->name, BAD_CAST it->second.c_str());
                    else if (!starts_with_ci(v, "data:"))
                        remove = true;
                } else if (aname == "srcset" || aname == "ping" || aname == "action"
                           || aname == "formaction" || aname == "manifest") {
                    remove = true;
                } else if (aname == "href" || aname == "xlink:href") {
                    // Links are followed only when clicked; anything else with an href would load
                    // it.
                    bool link = name == "a" || name == "area";
                    if (starts_with_ci(v, "javascript:")
                        || (!link && !v.starts_with("#") && !starts_with_ci(v, "data:")))
                        remove = true;
                } else if (aname == "style") {
                    xmlSetProp(child, a->name, BAD_CAST clean_css(value).c_str());
                }
                if (remove) xmlRemoveProp(a);
                a = an;
            }
            if (name == "style") {
                xmlChar* css = xmlNodeGetContent(child);
                std::string cleaned = clean_css(css ? reinterpret_cast<const char*>(css) : "");
                if (css) xmlFree(css);
                xmlNodeSetContent(child, nullptr);
                xmlAddChild(child, xmlNewText(BAD_CAST cleaned.c_str()));
            } else {
                sanitize(child, images);
            }
        }
        child = next;
    }
}

xmlNodePtr find_child(xmlNodePtr parent, const char* name)
{
    for (xmlNodePtr c = parent ? parent->children : nullptr; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && lower(reinterpret_cast<const char*>(c->name)) == name)
            return c;
    return nullptr;
}

xmlNodePtr find_first(xmlNodePtr node, const char* name)
{
    for (xmlNodePtr c = node ? node->children : nullptr; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE) continue;
        if (lower(reinterpret_cast<const char*>(c->name)) == name) return c;
        if (xmlNodePtr f = find_first(c, name)) return f;
    }
    return nullptr;
}

bool is_element(xmlNodePtr node, const char* name)
{
    return node->type == XML_ELEMENT_NODE
        && lower(reinterpret_cast<const char*>(node->name)) == name;
}

// Moves the children of `from`, in order, to the end of `to`.
void move_children(xmlNodePtr from, xmlNodePtr to)
{
    while (xmlNodePtr c = from->children) {
        xmlUnlinkNode(c);
        xmlAddChild(to, c);
    }
}

// Lifts every html and body element below `node` (but the page's own body) out of the tree,
// its children taking its place, and moves what every other head holds into the page's head.
void unwrap_documents(xmlNodePtr node, xmlNodePtr head, xmlNodePtr body)
{
    for (xmlNodePtr c = node->children; c;) {
        if (c == head || c == body
            || !(is_element(c, "html") || is_element(c, "body") || is_element(c, "head"))) {
            if (c->type == XML_ELEMENT_NODE) unwrap_documents(c, head, body);
            c = c->next;
            continue;
        }
        xmlNodePtr before = c->prev;
        if (is_element(c, "head")) {
            move_children(c, head);
        } else {
            // (a lifted text node may merge into the one before it, which frees it)
            while (xmlNodePtr g = c->children) {
                xmlUnlinkNode(g);
                xmlAddPrevSibling(c, g);
            }
        }
        xmlUnlinkNode(c);
        xmlFreeNode(c);
        c = before ? before->next : node->children; // the lifted children are looked at in turn
    }
}

// One document however many the text holds: libxml2 keeps a second <html> (a model that wrote
// its page twice, or a page after </html>) as an element after the body, or as a second root
// that would be lost. Their heads go into the first head, everything else into the first body.
void merge_documents(xmlDocPtr doc, xmlNodePtr root)
{
    for (xmlNodePtr c = root->next; c;) {
        xmlNodePtr next = c->next;
        if (c->type == XML_ELEMENT_NODE || c->type == XML_TEXT_NODE) {
            xmlUnlinkNode(c);
            xmlAddChild(root, c);
        }
        c = next;
    }
    xmlNodePtr head = nullptr, body = nullptr;
    for (xmlNodePtr c = root->children; c; c = c->next) {
        if (!head && is_element(c, "head")) head = c;
        if (!body && is_element(c, "body")) body = c;
    }
    if (!head) {
        head = xmlNewDocNode(doc, nullptr, BAD_CAST "head", nullptr);
        if (root->children)
            xmlAddPrevSibling(root->children, head);
        else
            xmlAddChild(root, head);
    }
    if (!body) body = xmlNewChild(root, nullptr, BAD_CAST "body", nullptr);
    unwrap_documents(root, head, body);
    // Whatever now stands beside the head and body belongs in the body, in its order.
    for (xmlNodePtr c = root->children; c;) {
        xmlNodePtr next = c->next;
        if (c != head && c != body) {
            xmlUnlinkNode(c);
            xmlAddChild(body, c);
        }
        c = next;
    }
    xmlUnlinkNode(head);
    xmlUnlinkNode(body);
    xmlAddChild(root, head);
    xmlAddChild(root, body);
}

struct DocFree
{
    void operator()(xmlDocPtr d) const { xmlFreeDoc(d); }
};

} // namespace

std::string make_self_contained_html(std::string_view html,
                                     const std::map<std::string, std::string>& images)
{
    static std::once_flag init;
    std::call_once(init, [] { xmlInitParser(); });

    // An empty page is still a page: the parser wants at least one node.
    std::string text(html);
    if (trim(text).empty()) text = "<body></body>";
    std::unique_ptr<xmlDoc, DocFree> doc(htmlReadMemory(
        text.data(), int(std::min<size_t>(text.size(), INT32_MAX)), nullptr, "UTF-8",
        HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING));
    if (!doc || !xmlDocGetRootElement(doc.get())) {
        std::string page = "<html><body><pre>" + escape_text(html) + "</pre></body></html>";
        doc.reset(htmlReadMemory(page.data(), int(page.size()), nullptr, "UTF-8",
                                 HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR
                                     | HTML_PARSE_NOWARNING));
        if (!doc) throw Error(ErrorKind::internal, "libxml2 could not build an HTML page");
    }
    if (xmlDtdPtr dtd = xmlGetIntSubset(doc.get())) { // ours is written below
        xmlUnlinkNode(reinterpret_cast<xmlNodePtr>(dtd));
        xmlFreeDtd(dtd);
    }
    xmlNodePtr root = xmlDocGetRootElement(doc.get());
    if (lower(reinterpret_cast<const char*>(root->name)) != "html") {
        xmlNodePtr wrap = xmlNewDocNode(doc.get(), nullptr, BAD_CAST "html", nullptr);
        xmlReplaceNode(root, wrap);
        xmlNodePtr body = xmlNewChild(wrap, nullptr, BAD_CAST "body", nullptr);
        xmlAddChild(body, root);
        root = wrap;
    }
    merge_documents(doc.get(), root);
    sanitize(root, images);

    xmlNodePtr head = find_child(root, "head");
    if (!find_child(head, "title")) {
        xmlNodePtr h1 = find_first(root, "h1");
        xmlChar* t = h1 ? xmlNodeGetContent(h1) : nullptr;
        xmlNewTextChild(head, nullptr, BAD_CAST "title", t ? t : BAD_CAST "Page");
        if (t) xmlFree(t);
    }
    xmlNodePtr csp = xmlNewDocNode(doc.get(), nullptr, BAD_CAST "meta", nullptr);
    xmlNewProp(csp, BAD_CAST "http-equiv", BAD_CAST "Content-Security-Policy");
    xmlNewProp(csp, BAD_CAST "content", BAD_CAST kPolicy);
    if (head->children)
        xmlAddPrevSibling(head->children, csp);
    else
        xmlAddChild(head, csp);
    xmlNodePtr charset = xmlNewDocNode(doc.get(), nullptr, BAD_CAST "meta", nullptr);
    xmlNewProp(charset, BAD_CAST "charset", BAD_CAST "utf-8");
    xmlAddPrevSibling(csp, charset);
    if (!xmlHasProp(root, BAD_CAST "lang")) xmlNewProp(root, BAD_CAST "lang", BAD_CAST "en");

    // The root alone, so that the serializer leaves the head as built (dumping the document
    // rewrites charset metas), told it is UTF-8 so that text is not turned into entities.
    xmlOutputBufferPtr buf = xmlAllocOutputBuffer(nullptr); // libxml2 holds UTF-8 already
    if (!buf) throw Error(ErrorKind::resource, "libxml2 could not allocate an output buffer");
    htmlNodeDumpFormatOutput(buf, doc.get(), root, "UTF-8", 0);
    xmlOutputBufferFlush(buf);
    std::string page = "<!DOCTYPE html>\n";
    page.append(reinterpret_cast<const char*>(xmlOutputBufferGetContent(buf)),
                xmlOutputBufferGetSize(buf));
    xmlOutputBufferClose(buf);
    return page;
}

std::string article_html(const Article& article, const std::vector<PoolImage>& pool)
{
    // cmark's default is safe: raw HTML in the Markdown and javascript: links are dropped.
    char* body = cmark_markdown_to_html(article.markdown.data(), article.markdown.size(),
                                        CMARK_OPT_DEFAULT);
    if (!body) throw Error(ErrorKind::resource, "cmark could not render the article");
    std::string page = "<html><head><meta name=\"viewport\" "
                       "content=\"width=device-width, initial-scale=1\"><title>"
        + escape_text(article.title) + "</title><style>" + kArticleStyle
        + "</style></head><body><article>" + body + "</article></body></html>";
    std::free(body);
    std::map<std::string, std::string> images;
    for (size_t i = 0; i < article.images.size(); ++i) {
        int p = article.images[i].pool_index;
        if (p < 0) continue;
        if (size_t(p) >= pool.size())
            throw Error(ErrorKind::invalid_argument, "the article names an image the pool lacks");
        std::vector<uint8_t> jpeg = encode_jpeg(pool[size_t(p)].image, 85);
        images[article_image_file(article, i)] = "data:image/jpeg;base64," + base64_encode(jpeg);
    }
    return make_self_contained_html(page, images);
}

} // namespace iris::reasoning
