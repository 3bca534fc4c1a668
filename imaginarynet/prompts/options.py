"""The prompt sources' options: the template, GPT-2 continuations, chat-model captions."""
from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

from imaginarynet.errors import UserError
from imaginarynet.options import StageOptions, check_model_ref, option
from imaginarynet.scenes import SCENE_TEMPLATE, SINGLE_TEMPLATE


@dataclass(frozen=True)
class PromptOptions(StageOptions):
    group = "prompts"
    template: str | None = option(SINGLE_TEMPLATE, "--template", cli_default=None, help=(
        "Prompt template; {name} is the class display name, {names} the English list of every prompted class "
        "with articles ('a dog, a cat and an apple') [default: 'A photo of a {name}.'; 'A photo of {names}.' "
        "with --objects-per-image above 1]."))
    gpt: bool = option(False, "--gpt", is_flag=True, help="Expand prompts with GPT-2.")
    gpt_model: str = option("gpt2-large", "--gpt-model", help="GPT-2 hub id or local folder.")
    gpt_max_tokens: int = option(15, "--gpt-max-tokens", type=int,
                                 help="Length of an expanded prompt in GPT-2 tokens, template included.")
    llm: str | None = option(None, "--llm", metavar="ID|DIR", help=(
        "Captions from an instruction-tuned chat model (transformers, with a chat template), e.g. "
        "Qwen/Qwen2.5-0.5B-Instruct; instead of --gpt."))
    llm_instruction: str | None = option(None, "--llm-instruction", help=(
        "Instruction for --llm; {name} is the class display name [default: asks for one realistic photo caption "
        "containing the name]."))
    llm_max_tokens: int = option(40, "--llm-max-tokens", type=int, help="New tokens per caption at most.")

    def data_options(self, cfg) -> dict:
        opts = {"template": self.template, "gpt": self.gpt}
        if self.gpt:
            opts.update(gpt_model=self.gpt_model, gpt_max_tokens=self.gpt_max_tokens)
        if self.llm:
            opts.update(llm=self.llm, llm_instruction=self.llm_instruction, llm_max_tokens=self.llm_max_tokens)
        return opts

    def check(self, cfg) -> dict:
        template = self.template
        if template is None:
            template = SCENE_TEMPLATE if cfg.scenes else SINGLE_TEMPLATE
        check_template(template)
        if self.gpt_max_tokens < 1:
            raise UserError(f"--gpt-max-tokens must be at least 1 (got {self.gpt_max_tokens})")
        if self.gpt:
            check_model_ref("--gpt-model", self.gpt_model)
            context = gpt_context(self.gpt_model)
            if context is not None and self.gpt_max_tokens > context:
                raise UserError(f"--gpt-max-tokens {self.gpt_max_tokens} is above {self.gpt_model}'s context "
                                f"of {context} tokens")
        if self.llm:
            self._check_llm()
        if cfg.scenes:  # every prompted class of a scene is verified and labelled: the prompt must name them all
            for flag, text in (("--template", template), ("--llm-instruction", self.llm_instruction)):
                if text is not None and "names" not in _fields(text):
                    raise UserError(f"{flag} {text!r} has no {{names}}: with --objects-per-image above 1 the "
                                    "prompt must name every prompted class")
        return {"template": template}

    def _check_llm(self) -> None:
        if self.gpt:
            raise UserError("give --gpt (GPT-2 continuations) or --llm (chat-model captions), not both")
        check_model_ref("--llm", self.llm)
        if self.llm_max_tokens < 1:
            raise UserError(f"--llm-max-tokens must be at least 1 (got {self.llm_max_tokens})")
        if self.llm_instruction is not None:
            check_template(self.llm_instruction, "--llm-instruction")
        if has_chat_template(self.llm) is False:
            raise UserError(f"--llm {self.llm} has no chat template: use an instruction-tuned (chat) model")

    def models(self, cfg) -> list[tuple[str, str, str]]:
        if self.gpt:
            return [("prompts", self.gpt_model, "hub")]
        return [("prompts", self.llm, "hub")] if self.llm else []


def _fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        return set()


def check_template(template: str, flag: str = "--template") -> None:
    """Only plain {name} / {names} fields: no attributes, indexes, conversions, format specs or positional
    fields."""
    bad = UserError(f"{flag} may only contain {{name}} or {{names}} fields (and {{{{ }}}} for braces): "
                    f"{template!r}")
    try:
        fields_ = [(f, conv, spec) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError:
        raise bad from None
    if any(f not in ("name", "names") or conv or spec for f, conv, spec in fields_):
        raise bad
    if not fields_:
        raise UserError(f"{flag} must contain {{name}} or {{names}}: {template!r}")


def gpt_context(model: str) -> int | None:
    """The model's context length from its config.json (a local folder), without loading it."""
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except ValueError:
            return None
        return data.get("n_positions") or data.get("max_position_embeddings")
    return 1024 if model.split("/")[-1].startswith(("gpt2", "distilgpt2")) else None


def has_chat_template(folder) -> bool | None:
    """For a local model folder: whether its tokenizer carries a chat template (None: not a folder)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    config = folder / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text()).get("chat_template")) if config.exists() else False
    except ValueError:
        return False
