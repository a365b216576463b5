package io.peft4j.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;

/** The {@code peft} command. User errors print one line and exit non-zero; no stack traces. */
@Command(name = "peft", mixinStandardHelpOptions = true, version = "peft4j 0.1.0", scope = CommandLine.ScopeType.INHERIT,
        description = "Parameter-efficient fine-tuning for Java, compatible with Hugging Face peft.",
        subcommands = {DemoCommand.class, LogitsCommand.class, GenerateCommand.class, TrainableCommand.class,
                MergeCommand.class, TrainCommand.class, EvalCommand.class, CompareCommand.class, InspectCommand.class,
                BenchCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(execute(args));
    }

    /** Runs the command line and returns the exit code (for tests). */
    public static int execute(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            PrintWriter err = cmd.getErr();
            err.println("peft " + cmd.getCommandName() + ": error: " + describe(ex));
            if (System.getenv("PEFT4J_DEBUG") != null) {
                ex.printStackTrace(err);
            }
            err.flush();
            return isUserError(ex) ? 2 : 1;
        });
        cl.setParameterExceptionHandler((ex, a) -> {
            PrintWriter err = ex.getCommandLine().getErr();
            err.println("peft " + ex.getCommandLine().getCommandName() + ": " + ex.getMessage()
                    + " (see --help)");
            err.flush();
            return 2;
        });
        return cl.execute(args);
    }

    static boolean isUserError(Throwable ex) {
        return ex instanceof IllegalArgumentException || ex instanceof IOException
                || ex instanceof UncheckedIOException || ex instanceof UnsupportedOperationException
                || ex instanceof IllegalStateException || ex instanceof ArithmeticException;
    }

    static String describe(Throwable ex) {
        Throwable t = ex;
        if (t instanceof UncheckedIOException && t.getCause() != null && t.getMessage() == null) {
            t = t.getCause();
        }
        String msg = t.getMessage();
        if (msg == null || msg.isBlank()) {
            msg = t.getClass().getSimpleName();
        }
        if (t instanceof java.nio.file.NoSuchFileException) {
            msg = "no such file: " + msg;
        }
        return msg.replace('\n', ' ');
    }
}
