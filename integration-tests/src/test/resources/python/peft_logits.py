"""Logits of a base model with an adapter, computed by Hugging Face transformers + peft (for PythonPeftInteropTest).

Usage: peft_logits.py BASE_DIR ADAPTER_DIR INPUTS_JSON OUT_SAFETENSORS
Prints one JSON line with the versions used.
"""
import json
import sys

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

base_dir, adapter_dir, inputs_json, out = sys.argv[1:5]
inputs = json.load(open(inputs_json))
ids = torch.tensor(inputs["input_ids"])
mask = torch.tensor(inputs.get("attention_mask", [[1] * len(r) for r in inputs["input_ids"]]))
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir).eval()
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=mask).logits.float().contiguous()
save_file({"logits": logits}, out)
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}))
