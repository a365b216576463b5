"""Creates an adapter with Hugging Face peft from an adapter_config.json (non-trivial weights: init_lora_weights
False for the LoRA family, random IA3 vectors and prompt embeddings), saves it and the logits it gives
(for PythonPeftInteropTest).

Usage: peft_save.py BASE_DIR ADAPTER_CONFIG_JSON INPUTS_JSON OUT_ADAPTER_DIR OUT_SAFETENSORS
"""
import json
import sys

import peft
import torch
import transformers
from peft import PeftConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

base_dir, config_json, inputs_json, out_dir, out = sys.argv[1:6]
torch.manual_seed(0)
cfg_dict = json.load(open(config_json))
cfg_dict["inference_mode"] = False
if "init_lora_weights" in cfg_dict:
    cfg_dict["init_lora_weights"] = False
# Keep the fields this peft version knows (the reference configs come from an older one).
known = PeftConfig.from_peft_type(peft_type=cfg_dict["peft_type"], task_type=cfg_dict.get("task_type")).to_dict()
config = PeftConfig.from_peft_type(**{k: v for k, v in cfg_dict.items() if k in known})
model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.add_(torch.randn_like(p) * 0.1)
model.eval()
inputs = json.load(open(inputs_json))
ids = torch.tensor(inputs["input_ids"])
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float().contiguous()
model.save_pretrained(out_dir)
save_file({"logits": logits}, out)
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}))
