using Mtfm.Engine.Backends;   // ComputeDevice
using Mtfm.Engine.Hosting;
using Mtfm.Engine.Serving;

// HelloMtfm: a host application that trains MTFM on a small event log and scores requests, through the public API
// of the Mtfm.Engine package only.
//   HelloMtfm train <model-dir>                 train on the built-in tiny synthetic log, print test metrics, save
//   HelloMtfm score <model-dir> [requests.jsonl] score JSON-lines requests (built-in examples when no file): one response per line
//   HelloMtfm [<model-dir>]                     both
string mode = args.Length > 0 ? args[0] : "all";
string dir = args.Length > 1 ? args[1] : Path.Combine(Path.GetTempPath(), "hello-mtfm-model");
switch (mode)
{
    case "train":
        Train(dir);
        return 0;
    case "score":
        return Score(dir, args.Length > 2 ? File.ReadLines(args[2]) : ExampleRequests());
    case "all":
        Train(dir);
        return Score(dir, ExampleRequests());
    default:
        Console.Error.WriteLine($"HelloMtfm: unknown mode '{mode}' (use train, score or all)");
        return 2;
}

static void Train(string dir)
{
    // The README's lines, as a host writes them.
    var data = EventDataset.Synthetic("tiny");   // or EventDataset.Load("schema.json", "events.csv")
    var progress = new Progress<TrainingProgress>(p => Console.Error.WriteLine($"step {p.Step}/{p.TotalSteps}: loss {p.Loss:F4}"));
    using var model = TrainedModel.Train(data, new TrainingSettings { Preset = "tiny", Epochs = 8, BatchTokens = 512 }, ComputeDevice.Cpu(threads: 1), progress);
    foreach (var m in model.Evaluate(data, DatasetPart.Test)) Console.WriteLine($"{m.Scenario ?? "(all)"} {m.Task}: AUC {m.Auc:F4}, log-loss {m.LogLoss:F4}");
    model.Save(dir);
    Console.WriteLine($"trained {model.Summary!.Steps} steps, {model.ParameterCount} parameters; saved {dir}");
}

static int Score(string dir, IEnumerable<string> requests)
{
    using var scorer = Scorer.Load(dir, threads: 1);
    int bad = 0;
    foreach (var line in requests)
    {
        if (string.IsNullOrWhiteSpace(line)) continue;
        try
        {
            var response = scorer.Score(ScoreRequest.Parse(line));
            Console.WriteLine(response.ToJson());
        }
        catch (ScoreRequestException ex)
        {
            Console.Error.WriteLine($"HelloMtfm: rejected request: {ex.Message}");
            bad++;
        }
    }
    return bad == 0 ? 0 : 1;
}

// Requests for the synthetic schema (scenarios feed, groupbuy, coupon; sequences click, order); see docs/serving.md.
static IEnumerable<string> ExampleRequests()
{
    const long day3 = 1735689600 + 3 * 86400;
    for (int u = 0; u < 6; u++)
    {
        string events = $$$"""
            [{"sequence":"click","time":{{{day3 - 90000 + u}}},"features":{"item_id":{{{12 + u}}},"category":{{{u % 8}}},"scenario":"feed"}},
             {"sequence":"order","time":{{{day3 - 80000}}},"features":{"item_id":{{{12 + u}}},"category":{{{u % 8}}},"price":{{{9.5 + u}}}}},
             {"sequence":"click","time":{{{day3 + 600}}},"features":{"item_id":{{{40 + u}}},"category":{{{(u + 3) % 8}}},"scenario":"groupbuy"}}]
            """;
        yield return $$$"""{"user":"u{{{u}}}","scenario":"feed","time":{{{day3 + 3600 * (u + 1)}}},"features":{"user_id":{{{u}}},"hour":{{{(u * 5) % 24}}}},"events":{{{events}}},"candidates":[{"item_id":12,"category":3},{"item_id":{{{40 + u}}},"category":5},{"item_id":277,"category":1}]}""".ReplaceLineEndings("");
        yield return $$$"""{"user":"u{{{u}}}","scenario":"groupbuy","time":{{{day3 + 7200}}},"features":{"user_id":{{{u}}}},"events":{{{events}}},"candidates":[{"item_id":7,"category":2,"shop_id":3,"price":19.9},{"item_id":{{{100 + u}}},"category":6,"shop_id":{{{u}}},"price":4.5}]}""".ReplaceLineEndings("");
    }
}
