// A launch script read as data: the subset of bash that Megatron-LM launch scripts use
// (assignments and arrays, ${VAR:-default} and ${A[@]} expansions, $((...)) arithmetic, line
// continuations, if/elif/else on [[ ]] tests, export, #SBATCH directives), evaluated without a
// shell. Nothing is run: $(...), backticks, `source` and every other command are not executed;
// a value that would need them is unknown and says why, with its line. The environment is not
// read: only the variables the caller passes (flopscope's --job-env) are set at the start.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace flopscope::job {

// One word of a command after expansion. `known` false: its text could not be known without
// running something or reading the environment (`why` says which, `line` where).
struct Word {
  std::string text;
  bool known = true;
  std::string why;
  int line = 0;        // where the word was written (an array element: the element's line)
  int value_line = 0;  // where its value was assigned, when it came through a variable (0: here)
};

// A command the script would run, its words expanded.
struct ShellCommand {
  std::vector<Word> words;
  int line = 0;
};

// Something the reader did not do, for the job's "not given" list.
struct ShellNote {
  std::string what;  // e.g. "$(scontrol show hostname ...)", "source .env/bin/activate"
  int line = 0;
  std::string why;
};

struct ShellResult {
  std::vector<ShellCommand> commands;                  // in order; assignments are not commands
  std::map<std::string, std::pair<std::string, int>> sbatch;  // #SBATCH --key value (or -N value): value, line
  std::vector<ShellNote> notes;
  // The value of a scalar variable at the end, when known (for launcher variables).
  std::map<std::string, Word> final_scalars;
};

// Evaluates `text` (the file's contents; `origin` names it in errors). `env` holds the only
// variables set before the first line. Throws UsageError on a syntax it cannot follow (an
// unterminated quote, array or if), naming the line.
ShellResult read_shell(const std::string& text, const std::string& origin, const std::map<std::string, std::string>& env);

}  // namespace flopscope::job
