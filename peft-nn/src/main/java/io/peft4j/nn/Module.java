package io.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.BiConsumer;

/**
 * A node of the model tree, in the manner of {@code torch.nn.Module}: ordered children, parameters and
 * buffers whose dotted paths are the Hugging Face checkpoint names.
 *
 * <p>Parents call children through {@link #child(String)} at call time, so replacing a child (how PEFT
 * injects adapters) is always honoured.
 */
public abstract class Module implements Cloneable {
    // Not final: deepCopy() gives each copy its own maps.
    private Map<String, Module> children = new LinkedHashMap<>();
    private Map<String, Param> params = new LinkedHashMap<>();
    private Map<String, Param> buffers = new LinkedHashMap<>();
    private Set<String> nonPersistent = new LinkedHashSet<>();
    private boolean training = true;

    /** Single-tensor forward; layers override it. */
    public NDArray forward(NDArray input) {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " has no single-input forward");
    }

    /**
     * A copy of this subtree with copied tensors (same manager, same requires-grad flags), like
     * {@code copy.deepcopy(module)}; parameters shared inside the subtree stay shared in the copy. Subclasses
     * whose own fields hold mutable state must override {@link #copyState(Module)}.
     */
    public Module deepCopy() {
        return copy(new IdentityHashMap<>(), new IdentityHashMap<>());
    }

    private Module copy(IdentityHashMap<Module, Module> modules, IdentityHashMap<Param, Param> tensors) {
        Module done = modules.get(this);
        if (done != null) {
            return done;
        }
        Module c;
        try {
            c = (Module) super.clone();
        } catch (CloneNotSupportedException e) {
            throw new AssertionError(e);
        }
        modules.put(this, c);
        c.children = new LinkedHashMap<>();
        children.forEach((k, m) -> c.children.put(k, m.copy(modules, tensors)));
        c.params = copyParams(params, tensors);
        c.buffers = copyParams(buffers, tensors);
        c.nonPersistent = new LinkedHashSet<>(nonPersistent);
        copyState(c);
        return c;
    }

    private static Map<String, Param> copyParams(Map<String, Param> from, IdentityHashMap<Param, Param> tensors) {
        Map<String, Param> out = new LinkedHashMap<>();
        from.forEach((k, p) -> out.put(k, tensors.computeIfAbsent(p, q -> {
            NDArray copy;
            // Under no-grad the copy is a fresh leaf, not a node of the original's graph.
            try (NoGrad ignored = NoGrad.enter()) {
                copy = q.data().duplicate();
            }
            return new Param(copy, q.requiresGrad());
        })));
        return out;
    }

    /** Hook for subclasses with mutable fields of their own: give {@code copy} independent state. */
    protected void copyState(Module copy) {}

    // ---- registration -------------------------------------------------------------------------------

    protected <T extends Module> T registerModule(String name, T module) {
        checkName(name);
        children.put(name, module);
        return module;
    }

    protected Param registerParameter(String name, Param param) {
        checkName(name);
        params.put(name, param);
        return param;
    }

    protected Param registerParameter(String name, NDArray data) {
        return registerParameter(name, new Param(data, true));
    }

    /** Registers a tensor that is not trained; persistent buffers are part of the state dict. */
    protected Param registerBuffer(String name, NDArray data, boolean persistent) {
        checkName(name);
        Param p = new Param(data, false);
        buffers.put(name, p);
        if (!persistent) {
            nonPersistent.add(name);
        }
        return p;
    }

    /** Removes a buffer, returning it (or null). */
    protected Param removeBuffer(String name) {
        nonPersistent.remove(name);
        return buffers.remove(name);
    }

    private static void checkName(String name) {
        if (name == null || name.isEmpty() || name.contains(".")) {
            throw new IllegalArgumentException("invalid module/parameter name '" + name + "'");
        }
    }

    // ---- access ------------------------------------------------------------------------------------

    /** The direct child called {@code name}; fails with the available names if there is none. */
    public Module child(String name) {
        Module m = children.get(name);
        if (m == null) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " has no child '" + name
                    + "'; children: " + children.keySet());
        }
        return m;
    }

    /** Calls the child's single-tensor forward. */
    protected NDArray call(String name, NDArray input) {
        return child(name).forward(input);
    }

    public boolean hasChild(String name) {
        return children.containsKey(name);
    }

    /** Replaces or adds a direct child. */
    public void setChild(String name, Module module) {
        checkName(name);
        children.put(name, module);
    }

    /** Removes a direct child, returning it (or null). */
    public Module removeChild(String name) {
        return children.remove(name);
    }

    public Map<String, Module> children() {
        return Collections.unmodifiableMap(children);
    }

    /** The direct parameter called {@code name}. */
    public Param param(String name) {
        Param p = params.get(name);
        if (p == null) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " has no parameter '" + name + "'");
        }
        return p;
    }

    /** The direct parameter or null. */
    public Param paramOrNull(String name) {
        return params.get(name);
    }

    /** Rebinds a direct parameter name to another {@link Param} (used to tie weights). */
    public void setParam(String name, Param p) {
        checkName(name);
        params.put(name, p);
    }

    public Param removeParam(String name) {
        return params.remove(name);
    }

    public Map<String, Param> parameters() {
        return Collections.unmodifiableMap(params);
    }

    public Param buffer(String name) {
        Param p = buffers.get(name);
        if (p == null) {
            throw new IllegalArgumentException(getClass().getSimpleName() + " has no buffer '" + name + "'");
        }
        return p;
    }

    public Map<String, Param> buffers() {
        return Collections.unmodifiableMap(buffers);
    }

    // ---- tree walks --------------------------------------------------------------------------------

    /** Every module with its dotted path ({@code ""} for this one), pre-order, each instance once. */
    public LinkedHashMap<String, Module> namedModules() {
        LinkedHashMap<String, Module> out = new LinkedHashMap<>();
        Set<Module> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        walk("", this, out, seen);
        return out;
    }

    private static void walk(String prefix, Module m, Map<String, Module> out, Set<Module> seen) {
        if (!seen.add(m)) {
            return;
        }
        out.put(prefix, m);
        for (Map.Entry<String, Module> e : m.children.entrySet()) {
            walk(prefix.isEmpty() ? e.getKey() : prefix + "." + e.getKey(), e.getValue(), out, seen);
        }
    }

    /** Every parameter with its dotted path; a parameter shared under two names appears once (first name). */
    public LinkedHashMap<String, Param> namedParameters() {
        LinkedHashMap<String, Param> out = new LinkedHashMap<>();
        Set<Param> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        forEachModule((path, m) -> {
            for (Map.Entry<String, Param> e : m.params.entrySet()) {
                if (seen.add(e.getValue())) {
                    out.put(join(path, e.getKey()), e.getValue());
                }
            }
        });
        return out;
    }

    /** Parameters and persistent buffers by path, including every alias of a shared tensor. */
    public LinkedHashMap<String, Param> namedStateEntries() {
        LinkedHashMap<String, Param> out = new LinkedHashMap<>();
        forEachModule((path, m) -> {
            for (Map.Entry<String, Param> e : m.params.entrySet()) {
                out.put(join(path, e.getKey()), e.getValue());
            }
            for (Map.Entry<String, Param> e : m.buffers.entrySet()) {
                if (!m.nonPersistent.contains(e.getKey())) {
                    out.put(join(path, e.getKey()), e.getValue());
                }
            }
        });
        return out;
    }

    private void forEachModule(BiConsumer<String, Module> visitor) {
        namedModules().forEach(visitor);
    }

    static String join(String prefix, String name) {
        return prefix.isEmpty() ? name : prefix + "." + name;
    }

    /** The module at a dotted path ({@code ""} is this module). */
    public Module getSubmodule(String path) {
        if (path.isEmpty()) {
            return this;
        }
        Module m = this;
        StringBuilder walked = new StringBuilder();
        for (String part : path.split("\\.")) {
            Module next = m.children.get(part);
            if (next == null) {
                throw new IllegalArgumentException("no submodule '" + path + "': '"
                        + (walked.length() == 0 ? "<root>" : walked) + "' has no child '" + part
                        + "' (children: " + m.children.keySet() + ")");
            }
            if (walked.length() > 0) {
                walked.append('.');
            }
            walked.append(part);
            m = next;
        }
        return m;
    }

    /** Replaces the module at a dotted path; its parent must exist. */
    public void setSubmodule(String path, Module module) {
        int dot = path.lastIndexOf('.');
        Module parent = dot < 0 ? this : getSubmodule(path.substring(0, dot));
        String name = dot < 0 ? path : path.substring(dot + 1);
        if (!parent.children.containsKey(name)) {
            throw new IllegalArgumentException("no submodule '" + path + "' to replace");
        }
        parent.children.put(name, module);
    }

    /** The parameter at a dotted path. */
    public Param getParameter(String path) {
        int dot = path.lastIndexOf('.');
        Module owner = dot < 0 ? this : getSubmodule(path.substring(0, dot));
        return owner.param(dot < 0 ? path : path.substring(dot + 1));
    }

    // ---- modes --------------------------------------------------------------------------------------

    /** Sets training mode on this module and every descendant (affects dropout). */
    public Module train(boolean on) {
        for (Module m : namedModules().values()) {
            m.training = on;
        }
        return this;
    }

    public Module eval() {
        return train(false);
    }

    public boolean isTraining() {
        return training;
    }

    /** Sets requires-grad on every parameter below this module. */
    public void requiresGrad(boolean flag) {
        for (Param p : namedParameters().values()) {
            p.requiresGrad(flag);
        }
    }

    // ---- counting and state dicts ------------------------------------------------------------------

    public long numParameters() {
        long n = 0;
        for (Param p : namedParameters().values()) {
            n += p.numel();
        }
        return n;
    }

    public long numTrainableParameters() {
        long n = 0;
        for (Param p : namedParameters().values()) {
            if (p.requiresGrad()) {
                n += p.numel();
            }
        }
        return n;
    }

    /** Parameter and persistent-buffer arrays by path (not copies: do not close them). */
    public LinkedHashMap<String, NDArray> stateDict() {
        LinkedHashMap<String, NDArray> out = new LinkedHashMap<>();
        namedStateEntries().forEach((k, v) -> out.put(k, v.data()));
        return out;
    }

    /**
     * Copies arrays into this tree by path. Shapes must match exactly (the message names the key and both
     * shapes). With {@code strict}, any missing or unexpected key fails; otherwise they are reported.
     * Arrays are converted to the parameter's data type and copied: the caller keeps ownership of {@code state}.
     */
    public LoadResult loadStateDict(Map<String, NDArray> state, boolean strict) {
        LinkedHashMap<String, Param> own = namedStateEntries();
        List<String> missing = new ArrayList<>();
        List<String> unexpected = new ArrayList<>();
        for (String k : state.keySet()) {
            if (!own.containsKey(k)) {
                unexpected.add(k);
            }
        }
        for (String k : own.keySet()) {
            if (!state.containsKey(k)) {
                missing.add(k);
            }
        }
        if (strict && (!missing.isEmpty() || !unexpected.isEmpty())) {
            throw new IllegalArgumentException("state dict does not match the model: missing keys " + missing
                    + ", unexpected keys " + unexpected);
        }
        for (Map.Entry<String, NDArray> e : state.entrySet()) {
            Param p = own.get(e.getKey());
            if (p == null) {
                continue;
            }
            Shape want = p.shape();
            Shape got = e.getValue().getShape();
            if (!want.equals(got)) {
                throw new IllegalArgumentException("size mismatch for '" + e.getKey() + "': checkpoint has shape "
                        + got + ", model expects " + want);
            }
        }
        Set<Param> assigned = Collections.newSetFromMap(new IdentityHashMap<>());
        for (Map.Entry<String, NDArray> e : state.entrySet()) {
            Param p = own.get(e.getKey());
            if (p == null || !assigned.add(p)) {
                continue;
            }
            NDArray target = p.data();
            NDArray copy = e.getValue().toType(target.getDataType(), true);
            copy.attach(target.getManager());
            p.setData(copy);
        }
        return new LoadResult(missing, unexpected);
    }

    /** Missing and unexpected keys of a non-strict {@link #loadStateDict}. */
    public record LoadResult(List<String> missingKeys, List<String> unexpectedKeys) {
        public LoadResult {
            missingKeys = List.copyOf(missingKeys);
            unexpectedKeys = List.copyOf(unexpectedKeys);
        }
    }

    // ---- printing -----------------------------------------------------------------------------------

    /** One-line description of this module's own settings, as in PyTorch's {@code extra_repr}. */
    public String extraRepr() {
        return "";
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        render(sb, 0);
        return sb.toString();
    }

    private void render(StringBuilder sb, int indent) {
        sb.append(getClass().getSimpleName()).append('(').append(extraRepr());
        if (!children.isEmpty()) {
            sb.append('\n');
            for (Map.Entry<String, Module> e : children.entrySet()) {
                sb.append("  ".repeat(indent + 1)).append('(').append(e.getKey()).append("): ");
                e.getValue().render(sb, indent + 1);
                sb.append('\n');
            }
            sb.append("  ".repeat(indent));
        }
        sb.append(')');
    }
}
